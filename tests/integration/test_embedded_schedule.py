"""The embedded default: a server started without a broker runs the real periodic jobs of gateway/schedule.py itself.

Each test starts its own server with no broker and the in-process schedule on,
in a data directory of its own, with only the job it looks at switched on;
what the job did is read from the database (a model list's recorded refresh,
a queued job's outcome).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from billing.models import UsageRecord
from providers.model_lists.services import SETTINGS_SOURCE, model_list_source_create
from providers.models import ModelListRefresh, ModelListSource, ModelRoute, PublicModel
from queueing.models import QueuedJob
from tenants.tests.factories import IssuedKey
from tests.fakes.model_list_server import FakeModelList
from tests.integration.test_queue_sweep import kept, moved_back
from tests.servers import PorticoServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

DEADLINE = 30.0
# Every periodic job off but the model lists' (each test sets its interval): nothing else writes meanwhile.
QUIET = {
    "PORTICO_DISCOVERY_INTERVAL": "0",
    "PORTICO_HEALTH_CHECK_INTERVAL": "0",
    "PORTICO_BATCH_SWEEP_INTERVAL": "0",
    "PORTICO_ROLLUP_INTERVAL": "0",
    "PORTICO_LEDGER_PARTITION_INTERVAL": "0",
    "PORTICO_QUEUE_SWEEP_INTERVAL": "0",
}


def entry(model: str) -> dict[str, object]:
    return {
        "model_version": model,
        "handle": "/openai/v1/chat/completions",
        "prompt_price_1k": 0.001,
        "completion_price_1k": 0.002,
    }


def until(condition: Callable[[], object], what: str, server: PorticoServer) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}\n{server.log()}"
        time.sleep(0.1)


@pytest.fixture
def model_list() -> Iterator[FakeModelList]:
    fake = FakeModelList()
    fake.start()
    yield fake
    fake.stop()
    ModelListSource.objects.all().delete()


@pytest.fixture
def embedded_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., PorticoServer]]:
    """Start a server with no broker that keeps the schedule (stopped at the end of the test)."""
    started: list[PorticoServer] = []

    def start(**env: str) -> PorticoServer:
        full = {
            **server_env,
            **QUIET,
            "PORTICO_CELERY_BROKER_URL": "embedded",
            "PORTICO_INPROCESS_SCHEDULER": "true",
            "PORTICO_DATA_DIR": str(tmp_path),
            "PORTICO_LOG_LEVEL": "INFO",
            **env,
        }
        server = PorticoServer(env=full, log_path=tmp_path / f"server-{len(started)}.log")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def test_without_a_broker_the_settings_model_list_is_read_as_the_server_starts_not_an_interval_later(
    model_list: FakeModelList, embedded_server: Callable[..., PorticoServer], tag: str
) -> None:
    model_list.serve([entry(f"at-start-{tag}")])
    # The periodic check is ten minutes away: only the start-up refresh can be seen within the test's deadline.
    server = embedded_server(PORTICO_MODEL_LIST_URL=model_list.list_url, PORTICO_MODEL_LIST_CHECK_INTERVAL="600")

    until(
        lambda: ModelListRefresh.objects.filter(source__name=SETTINGS_SOURCE).exists(),
        "the settings' source was refreshed at start",
        server,
    )
    [refresh] = ModelListRefresh.objects.filter(source__name=SETTINGS_SOURCE)
    assert refresh.status == "ok", refresh.error
    assert refresh.diff["added"] == [f"at-start-{tag}"]
    assert PublicModel.objects.filter(public_id=f"at-start-{tag}", active=True).exists()


def test_without_a_broker_the_periodic_model_list_job_refreshes_a_source_made_while_the_server_runs(
    model_list: FakeModelList, embedded_server: Callable[..., PorticoServer], tag: str
) -> None:
    model_list.serve([entry(f"periodic-{tag}")])
    server = embedded_server(PORTICO_MODEL_LIST_CHECK_INTERVAL="1")
    # Made after the start-up refresh had its chance: the periodic job, once a second, is what finds it due.
    source = model_list_source_create(name=f"made-later-{tag}", url=model_list.list_url)

    until(lambda: source.refreshes.exists(), "the periodic job refreshed the new source", server)
    [refresh] = source.refreshes.all()
    assert refresh.status == "ok", refresh.error
    assert refresh.diff["added"] == [f"periodic-{tag}"]
    assert len(model_list.list_requests()) == 1


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def test_without_a_broker_the_queue_sweep_expires_a_job_nothing_ran_before_its_deadline(
    embedded_server: Callable[..., PorticoServer], key: IssuedKey, upstream_route: ModelRoute, jobs_cleaned: None
) -> None:
    # Accepted by a server that stopped before running it: its deadline passed with no run to record the expiry.
    overdue = kept(key, upstream_route, "overdue", wait_seconds=1)
    moved_back(overdue, created_at=30, enqueued_at=30, deadline=20)

    server = embedded_server(PORTICO_QUEUE_SWEEP_INTERVAL="1")

    until(lambda: QueuedJob.objects.filter(pk=overdue, status="expired").exists(), "the job expired", server)
    until(lambda: UsageRecord.objects.filter(request_id=overdue).exists(), "the expiry's ledger row", server)
    row = UsageRecord.objects.get(request_id=overdue)
    assert (row.status, row.error_type) == (429, "queue_expired")
