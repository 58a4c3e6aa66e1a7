"""Where queued jobs run when no module worker does: a worker killed while its job waits, and no broker at all.

No other worker runs here (the module worker of test_queue_jobs.py has
stopped): a job waits in the broker until a test starts one. What a worker
killed mid-call leaves (a ledger row, or only the mark set before the call)
is gateway.queueing.runner's table, tested in gateway/tests/test_queue_runner.py
and tests/integration/test_queue_jobs_interrupted.py. Without a broker (the
embedded default) the server that accepted a job runs it on its own threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai.types.chat import ChatCompletion

from billing.models import UsageRecord
from providers.models import ModelRoute
from queueing.models import QueuedJob
from tenants.tests.factories import make_key
from tests.celery_processes import StartWorker
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_queue_jobs import WORKER_ENV, async_tenant, chat, eventually, hold_the_slot, poll
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

# A worker killed mid-job leaves its job `running` under a claim it no longer renews: once the claim's lease
# runs out, the client's next poll hands the job to the workers again (the broker's own redelivery, after its
# visibility timeout, would take half an hour).
SHORT_LEASE = {**WORKER_ENV, "PORTICO_QUEUE_JOB_LEASE": "2"}


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def test_a_job_whose_worker_is_killed_while_it_waits_is_run_by_the_next_and_sent_once(
    portico: PorticoServer,
    start_worker: StartWorker,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    key = make_key(tenant=async_tenant(f"killed-{tag}"), name="killed")
    upstream.script(upstream_route.upstream_model, Reply("after a restart", first_byte=3.0))
    settle()
    first = start_worker(concurrency=1, queues="interactive", **SHORT_LEASE)

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = hold_the_slot(pool, upstream, portico, key, upstream_route)
        accepted = chat(portico, key, upstream_route, Prefer="respond-async")
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        eventually(lambda: QueuedJob.objects.get(pk=job_id).attempts >= 1, what="the first worker taking the job")
        first.kill()  # while the job waits in line for the slot the first request holds
        start_worker(concurrency=1, queues="interactive", **SHORT_LEASE)
        assert held.result().status_code == 200

        answer = poll(portico, key, accepted.headers["location"], within=40)

    assert answer.status_code == 200, answer.text
    assert ChatCompletion.model_validate(answer.json()).choices[0].message.content == "after a restart"
    stored = QueuedJob.objects.get(pk=job_id)
    assert stored.status == "completed"
    assert stored.attempts >= 2  # the killed worker's run, then the next worker's
    assert len(upstream.received(upstream_route.upstream_model)) == 2  # the first request, and the job once
    # One row (the ledger is unique by request id, the job's id), with the whole wait since it was accepted.
    row = eventually(lambda: UsageRecord.objects.filter(request_id=job_id).first(), what="the job's ledger row")
    assert (row.status, row.queue_ms) == (200, stored.queue_ms)
    assert row.queue_ms >= 2000


@pytest.fixture(scope="module")
def embedded_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    """A Portico without a broker (the embedded default): its own threads run the jobs it accepts."""
    env = {**server_env, "PORTICO_CELERY_BROKER_URL": "embedded"}
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("portico-embedded") / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_without_a_broker_the_server_runs_the_jobs_it_accepts(
    embedded_portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    key = make_key(tenant=async_tenant(f"embedded-{tag}"), name="embedded")
    upstream.script(upstream_route.upstream_model, Reply("from the server's own threads", first_byte=0.5))
    settle(embedded_portico)

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = hold_the_slot(pool, upstream, embedded_portico, key, upstream_route)
        accepted = chat(embedded_portico, key, upstream_route, Prefer="respond-async")
        answer = poll(embedded_portico, key, accepted.headers["location"])
        assert held.result().status_code == 200

    assert accepted.status_code == 202
    assert answer.status_code == 200, answer.text
    assert ChatCompletion.model_validate(answer.json()).choices[0].message.content == "from the server's own threads"
    assert int(answer.headers["x-portico-queue-time"]) > 0
