"""Waiting in line for capacity, as a client sees it: served late rather than refused, or the 429 after its wait.

The tenant's policy is `wait`; its limit is one request in flight, held by a
request the fake upstream answers slowly. Limits are shared through Redis, as
the servers run with REDIS_URL. Waits are read from `x-portico-queue-time` and
the ledger's `queue_ms`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from billing.models import RateLimit, UsageRecord
from providers.models import ModelRoute
from tenants.models import Tenant
from tenants.services import queue_policy_set
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Wait for me"}]


def waiting_tenant(slug: str, *, mode: str = "wait", max_wait: int = 30) -> Tenant:
    tenant = make_tenant(slug=slug)
    queue_policy_set(owner=tenant, queue_mode=mode, queue_max_wait=max_wait)
    return tenant


def one_in_flight(tenant: Tenant) -> None:
    RateLimit.objects.create(tenant=tenant, max_concurrent=1)


def chat(server: PorticoServer, key: IssuedKey, route: ModelRoute, **headers: str) -> httpx.Response:
    return server.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}", **headers},
        json={"model": route.public_id, "messages": HELLO, "max_tokens": 8},
        timeout=30,
    )


def eventually(check: Callable[[], Any], *, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.02)
    return found


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def holding(
    pool: ThreadPoolExecutor, upstream: FakeUpstream, server: PorticoServer, key: IssuedKey, route: ModelRoute
) -> Future[httpx.Response]:
    """A request that holds the tenant's one slot until the fake answers it (its script's first byte)."""
    held = pool.submit(chat, server, key, route)
    eventually(lambda: len(upstream.received(route.upstream_model)) == 1)
    return held


def test_a_request_over_the_limit_waits_its_turn_and_is_served(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    pool: ThreadPoolExecutor,
) -> None:
    tenant = waiting_tenant(f"waits-{tag}")
    one_in_flight(tenant)
    key = make_key(tenant=tenant, name="waits")
    upstream.script(upstream_route.upstream_model, Reply("served in turn", first_byte=0.6))
    settle()

    held = holding(pool, upstream, portico, key, upstream_route)
    with portico.client(key.plaintext) as client:
        started = time.monotonic()
        raw = client.chat.completions.with_raw_response.create(
            model=upstream_route.public_id, messages=HELLO, max_tokens=8
        )
        took = time.monotonic() - started

    assert held.result().status_code == 200
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "served in turn"
    waited = int(raw.headers["x-portico-queue-time"])
    assert 200 <= waited <= took * 1000  # it waited for the first one's slot (about 0.6 s), then was served
    assert len(upstream.received(upstream_route.upstream_model)) == 2
    request_id = raw.headers["x-request-id"]
    row = eventually(lambda: UsageRecord.objects.filter(request_id=request_id).first())
    assert (row.status, row.queue_ms) == (200, waited)
    first = eventually(lambda: UsageRecord.objects.filter(api_key=key.api_key).exclude(request_id=request_id).first())
    assert first.queue_ms is None  # it did not wait


def test_a_request_that_asks_for_a_short_wait_gets_its_429_after_it(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    pool: ThreadPoolExecutor,
) -> None:
    tenant = waiting_tenant(f"short-{tag}")
    one_in_flight(tenant)
    key = make_key(tenant=tenant, name="short")
    upstream.script(upstream_route.upstream_model, Reply("slow", first_byte=2.0))
    settle()

    held = holding(pool, upstream, portico, key, upstream_route)
    with portico.client(key.plaintext) as client:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model=upstream_route.public_id,
                messages=HELLO,
                max_tokens=8,
                extra_headers={"x-portico-queue-timeout": "0.2"},
            )
        took = time.monotonic() - started

    assert 0.2 <= took < 1.0  # not the 2 s the slot is held, nor the policy's 30 s
    error = refused.value
    assert (error.type, error.code, error.param) == ("requests", "rate_limit_exceeded", None)
    assert error.body["message"].startswith("Too many concurrent requests on your organization: Limit 1")
    assert int(error.response.headers["retry-after"]) >= 1
    assert "x-portico-queue-time" not in error.response.headers
    assert held.result().status_code == 200
    assert len(upstream.received(upstream_route.upstream_model)) == 1


def test_a_tenant_without_a_queue_is_refused_at_once_as_before(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    pool: ThreadPoolExecutor,
) -> None:
    tenant = make_tenant(slug=f"no-queue-{tag}")
    one_in_flight(tenant)
    key = make_key(tenant=tenant, name="no queue")
    upstream.script(upstream_route.upstream_model, Reply("slow", first_byte=1.0))
    settle()

    held = holding(pool, upstream, portico, key, upstream_route)
    started = time.monotonic()
    refused = chat(portico, key, upstream_route, **{"x-portico-queue-timeout": "5"})

    assert refused.status_code == 429
    assert time.monotonic() - started < 0.5
    assert held.result().status_code == 200


def test_a_waiting_client_that_leaves_is_out_of_the_line_at_once_and_holds_nothing(
    portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    pool: ThreadPoolExecutor,
) -> None:
    tenant = waiting_tenant(f"leaves-{tag}")
    one_in_flight(tenant)
    key = make_key(tenant=tenant, name="leaves")
    upstream.script(upstream_route.upstream_model, Reply("slow", first_byte=1.0))
    settle()

    held = holding(pool, upstream, portico, key, upstream_route)
    gone_id = f"gone-{tag}"
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.3 s, while it waits in line
        portico.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}", "x-request-id": gone_id},
            json={"model": upstream_route.public_id, "messages": HELLO, "max_tokens": 8},
            timeout=0.3,
        )
    assert held.result().status_code == 200
    # The slot the first one frees goes to the next request at once: nobody holds it for the client that left.
    started = time.monotonic()
    assert chat(portico, key, upstream_route).status_code == 200
    assert time.monotonic() - started < 1.8  # its own upstream call (1 s), and no wait behind a ghost

    assert len(upstream.received(upstream_route.upstream_model)) == 2  # the one that left was never sent
    row = eventually(lambda: UsageRecord.objects.filter(client_request_id=gone_id).first())
    assert row.client_disconnected
    assert row.attempts == 0
    assert 250 <= row.queue_ms < 1000


def test_two_servers_serve_one_tenant_s_waiters_in_the_order_they_came(
    portico: PorticoServer,
    second_portico: PorticoServer,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
) -> None:
    """The process whose call ends would hand the slot to its own waiters every time; the shared order stops it."""
    tenant = waiting_tenant(f"two-{tag}")
    one_in_flight(tenant)
    key = make_key(tenant=tenant, name="two servers")
    upstream.script(upstream_route.upstream_model, Reply("in order", first_byte=0.15))
    settle(portico, second_portico)
    finished: dict[str, float] = {}
    lock = threading.Lock()

    def send(server: PorticoServer, name: str) -> None:
        response = chat(server, key, upstream_route, **{"x-request-id": name})
        assert response.status_code == 200, response.text
        with lock:
            finished[name] = time.monotonic()

    with ThreadPoolExecutor(max_workers=12) as executor:
        early = [executor.submit(send, portico, f"early-{n}") for n in range(5)]
        eventually(lambda: len(upstream.received(upstream_route.upstream_model)) == 1)
        time.sleep(0.1)  # let the four waiting join their line first: what is measured is the order after them
        other = executor.submit(send, second_portico, "other-server")
        time.sleep(0.1)
        late = [executor.submit(send, portico, f"late-{n}") for n in range(5)]
        for future in [*early, other, *late]:
            future.result()

    after_other = [name for name in finished if finished[name] > finished["other-server"]]
    # It came before the late ones: it is served before them, though their server frees every slot.
    assert set(after_other) >= {f"late-{n}" for n in range(5)}
