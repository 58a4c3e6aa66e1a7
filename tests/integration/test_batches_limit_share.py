"""A batch within its tenant's own limits leaves the tenant's interactive requests room (PORTICO_BATCH_LIMIT_SHARE).

The tenant may have three requests in flight. The worker runs six lines at once,
each holding its slot for a second, and tries refused lines again within a
tenth of a second, so the batch alone would keep all three slots taken. Its
lines may fill 80 % of the limit (two slots): requests the tenant's keys make
through the SDK meanwhile find the third free and are served, every one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from batches.models import Batch as BatchRow
from batches.models import BatchLine, File
from batches.services.files import file_delete
from billing.services import rate_limit_set
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey, make_key
from tests.celery_processes import StartWorker
from tests.fakes.openai_upstream import Echo, FakeUpstream, Reply
from tests.integration.test_batches import WORKER_ENV, chat_line, ledger_of, rows_of, sent_contents, start, wait_for
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

LINES = 12
SLOW = 1.0  # seconds each line holds its slot in flight
IN_FLIGHT = 3  # the tenant's limit; its batch lines may hold two of them
PROBES = 20  # interactive requests made while the batch's lines hold their slots
# Six lines at once, twice the tenant's limit; a refused line is tried again within 0.1 s.
SATURATING_WORKER = {**WORKER_ENV, "PORTICO_BATCH_CONCURRENCY": "6", "PORTICO_BATCH_RETRY_MAX_SECONDS": "0.1"}


@pytest.fixture(autouse=True)
def _remove_batches(committed_db: None) -> Iterator[None]:
    yield
    BatchLine.objects.all().delete()
    BatchRow.objects.all().delete()
    for file in File.objects.all():
        file_delete(file=file)


@pytest.fixture
def slow(upstream: FakeUpstream, upstream_route: ModelRoute) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(first_byte=SLOW))
    return upstream_route


@pytest.fixture
def live(upstream: FakeUpstream, upstream_provider: Provider, tag: str) -> ModelRoute:
    route = make_route(provider=upstream_provider, public_id=f"live-{tag}", upstream_model=f"live-{tag}")
    upstream.script(route.upstream_model, Echo())
    return route


def test_a_batch_leaves_its_tenants_interactive_requests_room_within_the_tenants_limit(
    portico: PorticoServer,
    start_worker: StartWorker,
    key: IssuedKey,
    slow: ModelRoute,
    live: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
) -> None:
    teammate = make_key(tenant=key.api_key.tenant, name="teammate")
    rate_limit_set(tenant=key.api_key.tenant, max_concurrent=IN_FLIGHT)
    settle()
    start_worker(**SATURATING_WORKER)
    lines = [chat_line(f"r{n}", slow.public_id, f"line {n}") for n in range(LINES)]
    statuses: list[int] = []
    with portico.client(key.plaintext) as owner, portico.client(teammate.plaintext) as other:
        created = start(owner, lines)
        deadline = time.monotonic() + 30
        while len(upstream.received(slow.upstream_model)) < 2:  # the batch holds its slots
            assert time.monotonic() < deadline, "the batch's lines never reached the upstream"
            time.sleep(0.02)
        for n in range(PROBES):
            sdk = owner if n % 2 == 0 else other
            try:
                answer = sdk.chat.completions.create(
                    model=live.public_id, messages=[{"role": "user", "content": f"live {n}"}]
                )
                assert answer.choices[0].message.content == f"live {n}"
                statuses.append(200)
            except openai.RateLimitError as refused:
                statuses.append(refused.status_code)
            time.sleep(0.1)
        # The probes ran while the batch still had lines to send: they met it, not its end.
        assert len(upstream.received(slow.upstream_model)) < LINES
        batch = wait_for(owner, created.id, "completed", "failed")
        output = rows_of(owner, batch.output_file_id)
    assert statuses == [200] * PROBES
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (LINES, 0)
    assert sorted(row["custom_id"] for row in output) == sorted(f"r{n}" for n in range(LINES))
    # Lines went back to pending when their share was taken, and each was sent once.
    assert BatchLine.objects.filter(batch_id=created.id, attempts__gt=1).exists()
    assert sent_contents(upstream, slow.upstream_model) == Counter({f"line {n}": 1 for n in range(LINES)})
    # At most two lines in flight at once: each pair reached the upstream a full answer after the pair before.
    arrived = sorted(request.at for request in upstream.received(slow.upstream_model))
    assert min(later - earlier for earlier, later in zip(arrived, arrived[2:], strict=False)) >= SLOW * 0.9
    ledger = ledger_of(created.id, LINES)
    assert sorted(row.status for row in ledger) == [200] * LINES
    assert len({row.request_id for row in ledger}) == LINES
