"""Model lists refreshed by a real `portico worker`: when it starts, and when the periodic job is enqueued by name."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from gateway.background import enqueue
from providers.model_lists.services import model_list_source_create
from providers.models import DeploymentProbe, DiscoveredModel, ModelListSource, PublicModel
from tests.celery_processes import StartWorker
from tests.fakes.model_list_server import FakeModelList

pytestmark = [pytest.mark.integration]

DEADLINE = 30.0


def entry(model: str) -> dict[str, object]:
    return {
        "model_version": model,
        "handle": "/openai/v1/chat/completions",
        "prompt_price_1k": 0.001,
        "completion_price_1k": 0.002,
    }


@pytest.fixture
def gateway() -> Iterator[FakeModelList]:
    fake = FakeModelList()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def list_rows(committed_db: None) -> Iterator[None]:
    yield
    ModelListSource.objects.all().delete()
    DeploymentProbe.objects.all().delete()
    DiscoveredModel.objects.all().delete()


def until(condition: Callable[[], object], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}"
        time.sleep(0.05)


def refreshed(source: ModelListSource) -> bool:
    return source.refreshes.exists()


@pytest.mark.usefixtures("list_rows")
def test_a_worker_refreshes_the_lists_when_it_starts_and_when_the_job_is_enqueued_by_name(
    gateway: FakeModelList, start_worker: StartWorker, tag: str
) -> None:
    gateway.serve([entry(f"at-start-{tag}"), entry(f"enqueued-{tag}")])
    before = model_list_source_create(name=f"before-{tag}", url=gateway.list_url)

    start_worker()
    until(lambda: refreshed(before), "the worker refreshed, as it started, a source that was due")

    # The start-up refresh is over (it queued the refresh it ran): only the job enqueued below can refresh this one.
    after = model_list_source_create(name=f"after-{tag}", url=gateway.list_url)
    enqueue("providers.tasks.model_list_sources_refresh")
    until(lambda: refreshed(after), "the enqueued job refreshed the source")

    [done] = after.refreshes.all()
    assert done.status == "partial"  # the other source made both models first: here they are in conflict
    assert PublicModel.objects.filter(list_entry__source=before).count() == 2
    assert before.refreshes.count() == 1
