"""Deployment caps seen through two Portico processes that share one Redis.

A public model on the fleet's loopback upstreams whose first deployment is
capped: across both servers, only as many calls as the cap allows reach it,
the rest go on to the second deployment (counted at the fake upstreams), and a
slot that a call held is free again once the call ends, however it ended (an
answer, a failure, a client that left mid-stream).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import Fail, Reply
from tests.fakes.fleet import FakeFleet
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]
SLOW = 3.0  # seconds the capped deployment takes to answer, far longer than sending a handful of calls takes
RELEASE_WITHIN = 5.0


@pytest.fixture
def servers(portico: PorticoServer, second_portico: PorticoServer) -> list[PorticoServer]:
    return [portico, second_portico]


def ask(server: PorticoServer, key: IssuedKey, model: str, **options: Any) -> str:
    """The answer's text: which fake upstream served it."""
    with server.client(key.plaintext, timeout=30) as client:
        answer = client.chat.completions.create(model=model, messages=HI, **options)
    return answer.choices[0].message.content or ""


def served_by_first_within(ask_once: Callable[[], str], seconds: float) -> None:
    """Ask until the capped deployment answers: its slot must come free within `seconds`."""
    deadline = time.monotonic() + seconds
    while ask_once() != "served by fake-1":
        assert time.monotonic() < deadline, "the capped deployment's slot was never released"


def test_a_requests_per_minute_cap_holds_across_both_servers_and_the_rest_fail_over(
    servers: list[PorticoServer], key: IssuedKey, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"rpm-{tag}"
    model = f"gpt-rpm-{tag}"
    deploy(model, upstream_model, urls=[upstreams[0].base_url, upstreams[1].base_url], max_requests_per_minute=3)
    settle(*servers)

    answers = [ask(servers[turn % 2], key, model) for turn in range(9)]

    # Three a minute in all, not three for each server: the fourth call, whichever server took it, moved on.
    assert answers == ["served by fake-1"] * 3 + ["served by fake-2"] * 6
    assert len(upstreams[0].received(upstream_model)) == 3
    assert len(upstreams[1].received(upstream_model)) == 6


def test_an_in_flight_cap_holds_across_both_servers_while_answers_are_slow(
    servers: list[PorticoServer], key: IssuedKey, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"inflight-{tag}"
    model = f"gpt-inflight-{tag}"
    upstreams[0].script(upstream_model, Reply(content="served by fake-1", first_byte=SLOW))
    deploy(model, upstream_model, urls=[upstreams[0].base_url, upstreams[1].base_url], max_in_flight=2)
    settle(*servers)

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda turn: ask(servers[turn % 2], key, model), range(6)))
    arrived = [request.at for request in upstreams[1].received(upstream_model)]

    assert max(arrived) - began < SLOW, "the calls were not all made while the first two were in flight"
    assert sorted(answers) == ["served by fake-1"] * 2 + ["served by fake-2"] * 4
    assert len(upstreams[0].received(upstream_model)) == 2
    # Both slots were given back: the capped deployment takes calls again, from either server.
    upstreams[0].script(upstream_model, Reply(content="served by fake-1"))
    for server in servers:
        served_by_first_within(lambda server=server: ask(server, key, model), RELEASE_WITHIN)


def test_a_slot_is_released_when_the_attempt_fails_or_the_client_leaves_mid_stream(
    servers: list[PorticoServer], key: IssuedKey, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"leave-{tag}"
    model = f"gpt-leave-{tag}"
    deploy(model, upstream_model, urls=[upstreams[0].base_url, upstreams[1].base_url], max_in_flight=1)
    settle(*servers)
    first, second = servers

    # A failure: the call moves on, and the slot it held on the failing deployment is free again.
    upstreams[0].script(upstream_model, Fail(500, "upstream exploded", type="server_error"))
    assert ask(first, key, model) == "served by fake-2"
    upstreams[0].script(upstream_model, Reply(content="served by fake-1"))
    served_by_first_within(lambda: ask(second, key, model), RELEASE_WITHIN)

    # A client that leaves a slow stream after its first chunk gives its slot back.
    upstreams[0].script(upstream_model, Reply(content="a long and slow answer " * 20, delay=0.5))
    with first.client(key.plaintext) as client:
        stream = client.chat.completions.create(model=model, messages=HI, stream=True)
        next(iter(stream))
        assert ask(second, key, model) == "served by fake-2"  # the slot is taken while the stream runs
        stream.close()
    upstreams[0].script(upstream_model, Reply(content="served by fake-1"))
    served_by_first_within(lambda: ask(second, key, model), RELEASE_WITHIN)
