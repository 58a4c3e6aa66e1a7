"""A batch against a deployment at its caps: the lines wait for room, as lines the tenant's limits refuse do.

The deployment takes one request at a time (`max_in_flight=1`) while the worker
runs four lines at once, so most claims find it full. Each such line goes back
to pending and runs later; none ends as a 503 in the error file, each is sent
upstream once, and each is one ledger row: its answer, not the refusals it
waited out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from batches.models import Batch as BatchRow
from batches.models import BatchLine, File
from batches.services.files import file_delete
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.celery_processes import StartWorker
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_batches import WORKER_ENV, chat_line, ledger_of, rows_of, sent_contents, start, wait_for
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

LINES = 8
SLOW = 0.2  # seconds each line holds the deployment's one slot


@pytest.fixture(autouse=True)
def _remove_batches(committed_db: None) -> Iterator[None]:
    yield
    BatchLine.objects.all().delete()
    BatchRow.objects.all().delete()
    for file in File.objects.all():
        file_delete(file=file)


@pytest.fixture
def narrow(upstream: FakeUpstream, upstream_provider: Provider, tag: str) -> ModelRoute:
    route = make_route(
        provider=upstream_provider, public_id=f"narrow-{tag}", upstream_model=f"narrow-{tag}", max_in_flight=1
    )
    upstream.script(route.upstream_model, Reply(first_byte=SLOW))
    return route


def test_lines_that_find_the_deployment_at_its_caps_wait_and_run_later(
    portico: PorticoServer,
    start_worker: StartWorker,
    key: IssuedKey,
    narrow: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    settle()
    start_worker(**{**WORKER_ENV, "PORTICO_BATCH_CONCURRENCY": "4"})
    lines = [chat_line(f"r{n}", narrow.public_id, f"line {n}") for n in range(LINES)]
    with portico.client(key.plaintext) as sdk:
        created = start(sdk, lines)
        batch = wait_for(sdk, created.id, "completed", "failed")
        output = rows_of(sdk, batch.output_file_id)
    assert batch.status == "completed"
    assert batch.error_file_id is None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (LINES, 0)
    assert sorted(row["custom_id"] for row in output) == sorted(f"r{n}" for n in range(LINES))
    assert {row["response"]["status_code"] for row in output} == {200}
    # Some line found the slot taken and went back to pending: the wait happened, it was not a lucky order.
    assert BatchLine.objects.filter(batch_id=created.id, attempts__gt=1).exists()
    assert sent_contents(upstream, narrow.upstream_model) == Counter({f"line {n}": 1 for n in range(LINES)})
    # One at a time: each line reached the upstream after the one before it had its answer.
    arrived = sorted(request.at for request in upstream.received(narrow.upstream_model))
    assert min(later - earlier for earlier, later in zip(arrived, arrived[1:], strict=False)) >= SLOW * 0.9
    # A refusal's row, were one written, would hold the line's request id and keep its answer's row out.
    ledger = ledger_of(created.id, LINES)
    assert sorted(row.status for row in ledger) == [200] * LINES
    assert len({row.request_id for row in ledger}) == LINES
