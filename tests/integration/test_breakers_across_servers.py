"""Breakers and the latency strategy, seen through real servers.

Two Portico processes share one Redis: failures one of them sees open the
deployment's breaker for both, so the other no longer waits on it; after the
cooldown a probe finds it healthy again and closes it everywhere. The latency
strategy, on its own, moves traffic off a deployment that answers slowly.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from gateway.models import BreakerTransition
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import Fail, Reply
from tests.fakes.fleet import FakeFleet
from tests.servers import PorticoServer, Settle, serving_several

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]
# Two failures in a row open a breaker, and a second later it lets one probe through.
BREAKER_ENV = {
    "PORTICO_BREAKER_CONSECUTIVE_FAILURES": "2",
    "PORTICO_BREAKER_COOLDOWN": "1",
    "PORTICO_BREAKER_HALF_OPEN_PROBES": "1",
    "PORTICO_DB_POOL_SIZE": "2",
}
PROPAGATION_BOUND = 1.0


@pytest.fixture(scope="module")
def pair(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PorticoServer]]:
    """Two server processes of one deployment, with breakers quick to open and to probe."""
    env = {**server_env, **BREAKER_ENV}
    logs: Path = tmp_path_factory.mktemp("breaker-pair")
    yield from serving_several(env, [logs / "a.log", logs / "b.log"])


def ask(server: PorticoServer, key: IssuedKey, model: str) -> tuple[str, str]:
    """The text of the answer and how many upstream attempts it took."""
    with server.client(key.plaintext) as client:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HI)
    return raw.parse().choices[0].message.content or "", raw.headers["x-portico-attempts"]


def transitions(route_id: int) -> list[tuple[str, str]]:
    rows = BreakerTransition.objects.filter(route_id=route_id).order_by("at", "id")
    return [(row.from_state, row.to_state) for row in rows]


def test_one_servers_failures_open_the_breaker_for_the_other_until_a_probe_closes_it(
    pair: list[PorticoServer], key: IssuedKey, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    first, second = pair
    upstream_model = f"br-{tag}"
    model = f"gpt-br-{tag}"
    upstreams[0].script(upstream_model, Fail(500, "down for maintenance", type="server_error"))
    routes = deploy(model, upstream_model, urls=[upstreams[0].base_url, upstreams[1].base_url])
    settle(first, second)

    # The first server meets two failures in a row: its answers still come from the second deployment.
    assert [ask(first, key, model) for _ in range(2)] == [("served by fake-2", "2")] * 2

    # The other server stops trying the failing deployment within the propagation bound.
    deadline = time.monotonic() + PROPAGATION_BOUND
    while ask(second, key, model)[1] != "1":
        assert time.monotonic() < deadline, "the second server still tries the failing deployment"
    failed_calls = len(upstreams[0].received(upstream_model))
    assert [ask(second, key, model) for _ in range(3)] == [("served by fake-2", "1")] * 3
    assert len(upstreams[0].received(upstream_model)) == failed_calls

    # Healthy again: after the cooldown one probe goes through, succeeds, and the breaker closes for both.
    upstreams[0].script(upstream_model, Reply())
    time.sleep(float(BREAKER_ENV["PORTICO_BREAKER_COOLDOWN"]))
    deadline = time.monotonic() + PROPAGATION_BOUND + 2.0
    while ask(second, key, model) != ("served by fake-1", "1"):
        assert time.monotonic() < deadline, "the breaker never closed"
    deadline = time.monotonic() + PROPAGATION_BOUND
    while ask(first, key, model) != ("served by fake-1", "1"):
        assert time.monotonic() < deadline, "the first server did not learn that the breaker closed"

    deadline = time.monotonic() + 5.0
    while transitions(routes[0].pk)[-1:] != [("half_open", "closed")]:
        assert time.monotonic() < deadline, f"history: {transitions(routes[0].pk)}"
        time.sleep(0.1)
    assert transitions(routes[0].pk) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_the_latency_strategy_moves_traffic_off_a_deployment_that_answers_slowly(
    client: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"lat-{tag}"
    model = f"gpt-lat-{tag}"
    upstreams[0].script(upstream_model, Reply(content="served by fake-1", first_byte=0.2))
    deploy(model, upstream_model, strategy="latency")
    settle()

    served: Counter[str | None] = Counter()
    for _ in range(40):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=HI, extra_headers={"x-request-id": uuid.uuid4().hex}
        )
        served[raw.parse().choices[0].message.content] += 1

    # Each deployment is tried while it has no figures; then the slow one gets the odd probe at most.
    assert served["served by fake-1"] <= 6, served
    assert served["served by fake-2"] + served["served by fake-3"] >= 34, served
