"""Waiting for a deployment's capacity across two servers: one deployment that takes one call at a time.

Both Portico processes share the deployment's cap through Redis, and the
fake upstream answers each call slowly. With a queue policy, calls sent to
both servers at once all succeed, served one after another, none of them
refused; without one, all but the first get the 503 that says when to come
back, as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.services import queue_policy_set
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "one at a time"}]
SLOW = 0.5  # seconds each call holds the deployment's one slot
CALLS = 6
MAX_WAIT = 30


@pytest.fixture
def narrow(upstream: FakeUpstream, upstream_provider: Provider, tag: str) -> ModelRoute:
    route = make_route(
        provider=upstream_provider, public_id=f"narrow-{tag}", upstream_model=f"narrow-{tag}", max_in_flight=1
    )
    upstream.script(route.upstream_model, Reply("served in turn", first_byte=SLOW))
    return route


def ask(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> Any:
    """The raw answer (its headers and parsed body); an SDK error is returned, not raised."""
    with server.client(key.plaintext, timeout=MAX_WAIT + 10) as client:
        try:
            return client.chat.completions.with_raw_response.create(model=route.public_id, messages=HI)
        except openai.APIStatusError as error:
            return error


def at_once(servers: list[PorticoServer], key: IssuedKey, route: ModelRoute) -> list[Any]:
    """CALLS calls sent together, alternately to each server."""
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        return list(pool.map(lambda turn: ask(servers[turn % 2], key, route), range(CALLS)))


def test_calls_from_both_servers_wait_their_turn_for_the_deployment_and_are_all_served(
    portico: PorticoServer,
    second_portico: PorticoServer,
    upstream: FakeUpstream,
    narrow: ModelRoute,
    settle: Settle,
    tag: str,
) -> None:
    tenant = make_tenant(slug=f"waits-{tag}")
    queue_policy_set(owner=tenant, queue_mode="wait", queue_max_wait=MAX_WAIT)
    key = make_key(tenant=tenant, name="waits")
    settle(portico, second_portico)

    answers = at_once([portico, second_portico], key, narrow)

    assert [answer.status_code for answer in answers] == [200] * CALLS  # none refused, on either server
    assert [answer.parse().choices[0].message.content for answer in answers] == ["served in turn"] * CALLS
    arrived = sorted(request.at for request in upstream.received(narrow.upstream_model))
    assert len(arrived) == CALLS  # each call sent once
    # One at a time, across both servers: each call reached the upstream after the one before it had its answer.
    assert min(later - earlier for earlier, later in zip(arrived, arrived[1:], strict=False)) >= SLOW * 0.9
    waits = sorted(int(answer.headers.get("x-portico-queue-time", "0")) for answer in answers)
    assert waits[-1] >= (CALLS - 2) * SLOW * 1000  # the last served waited for most of the others
    assert waits[-1] < MAX_WAIT * 1000


def test_without_a_queue_policy_the_calls_the_deployment_cannot_take_get_the_503_at_once(
    portico: PorticoServer,
    second_portico: PorticoServer,
    upstream: FakeUpstream,
    narrow: ModelRoute,
    settle: Settle,
    tag: str,
) -> None:
    key = make_key(tenant=make_tenant(slug=f"plain-{tag}"), name="plain")
    settle(portico, second_portico)

    answers = at_once([portico, second_portico], key, narrow)

    refused = [answer for answer in answers if isinstance(answer, openai.APIStatusError)]
    assert len(refused) == CALLS - 1
    for error in refused:
        assert error.status_code == 503
        assert (error.code, error.type) == ("no_deployment_available", "api_error")
        assert "at their capacity" in error.message
        assert int(error.response.headers["retry-after"]) >= 1
        assert "x-portico-queue-time" not in error.response.headers
    assert len(upstream.received(narrow.upstream_model)) == 1
