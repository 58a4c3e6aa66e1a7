"""The replicate kind's connection pool: one per provider's transport, opened by its first request."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest

from providers.adapters.base import Target
from providers.adapters.replicate import ReplicateAdapter
from providers.http import HttpxUpstream
from providers.tests.factories import make_provider_info
from tests.fakes.replicate_upstream import FakeReplicate

ADAPTER = ReplicateAdapter()
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def replicate() -> Iterator[FakeReplicate]:
    fake = FakeReplicate()
    fake.start()
    yield fake
    fake.stop()


def open_pools() -> int:
    gc.collect()
    return sum(_is_pool(found) for found in gc.get_objects())


def _is_pool(found: object) -> bool:
    try:
        return isinstance(found, httpx.AsyncHTTPTransport)
    except ReferenceError:  # a weakref.proxy whose object is gone, left by an earlier test in this process
        return False


def test_asking_for_the_transport_opens_no_pool() -> None:
    before = open_pools()

    transports = [ADAPTER.transport() for _ in range(3)]

    assert open_pools() == before
    assert len(transports) == 3  # held, so that a pool each would still be alive to count


async def test_one_pool_carries_every_prediction_of_a_provider(replicate: FakeReplicate) -> None:
    provider = make_provider_info(kind="replicate", base_url=replicate.base_url, extra_headers={})
    target = Target(provider=provider, upstream_model="meta/llama-pooled", public_model="house-model")
    upstream = HttpxUpstream(provider, ADAPTER.transport())
    try:
        for _ in range(3):
            response = await upstream.send(ADAPTER.request("chat", target, {"messages": HELLO}))
            await response.aread()
            await response.aclose()
            assert response.status_code == 200
    finally:
        await upstream.aclose()

    peers = [received.peer for received in replicate.received("meta/llama-pooled")]
    assert len(peers) == 3
    assert len(set(peers)) == 1  # one connection, kept alive from the first prediction to the last
