"""A breaker that opens is announced to the operators' alert channels once, by the process whose transition it was."""

from __future__ import annotations

import asyncio

import pytest

from gateway.breakers import LocalBreakers, RedisBreakers, TransitionLog
from gateway.tests.test_breakers import NAME, REDIS_URL, ROUTE, RULES, FakeClock, drop_keys, new_prefix
from notifications.models import AlertDelivery, AlertEvent
from notifications.tests.factories import make_email_channel
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

BREAKER = AlertEvent.BREAKER_OPEN


@pytest.fixture
def channels(tenant: Tenant) -> None:
    make_email_channel(name="on call", events=[BREAKER])
    make_email_channel(name="budgets only")
    # Made past the channel rules, which keep breaker alerts off a tenant's channels.
    make_email_channel(tenant=tenant, name="acme", events=[BREAKER])


def fail(breakers: LocalBreakers | RedisBreakers) -> None:
    for _ in range(RULES.consecutive_failures):
        breakers.record(ROUTE, NAME, ok=False, reason="upstream_unavailable")


@pytest.mark.usefixtures("channels")
def test_an_opening_reaches_the_operators_channels_once() -> None:
    clock, history = FakeClock(), TransitionLog()
    breakers = LocalBreakers(rules=RULES, clock=clock, history=history)

    fail(breakers)
    assert AlertDelivery.objects.count() == 0, "announced with the history's flush, off the request path"
    history.flush()

    [delivery] = AlertDelivery.objects.all()
    assert (delivery.channel.name, delivery.event) == ("on call", BREAKER)
    assert delivery.key == f"breaker:{ROUTE}:{clock.now!r}"
    assert delivery.subject == f"Portico: deployment {NAME} is out of rotation"
    assert delivery.text.endswith("UTC: 3 failures in a row: upstream_unavailable.")
    assert delivery.payload["deployment"] == {"id": ROUTE, "name": NAME}
    history.flush()
    assert AlertDelivery.objects.count() == 1


@pytest.mark.usefixtures("channels")
def test_a_failed_probe_reopening_it_is_not_announced_again_but_a_new_opening_is() -> None:
    clock, history = FakeClock(), TransitionLog()
    breakers = LocalBreakers(rules=RULES, clock=clock, history=history)
    fail(breakers)
    clock.advance(RULES.cooldown)
    assert asyncio.run(breakers.acquire_probe(ROUTE))
    breakers.record(ROUTE, NAME, ok=False, reason="timeout")  # half-open -> open
    history.flush()
    assert AlertDelivery.objects.count() == 1

    clock.advance(RULES.cooldown)
    assert asyncio.run(breakers.acquire_probe(ROUTE))
    breakers.record(ROUTE, NAME, ok=True)  # closed again
    clock.advance(1)
    fail(breakers)
    history.flush()

    assert AlertDelivery.objects.count() == 2


@pytest.mark.usefixtures("channels")
def test_with_shared_breakers_only_the_process_whose_transition_it_was_announces_it() -> None:
    prefix = new_prefix()
    clock = FakeClock()
    first, second = TransitionLog(), TransitionLog()

    async def both_processes_see_the_failures() -> None:
        processes = [
            RedisBreakers(REDIS_URL, prefix=prefix, rules=RULES, clock=clock, history=history)
            for history in (first, second)
        ]
        for breakers in processes:
            fail(breakers)
        await asyncio.gather(*(breakers.flush() for breakers in processes))
        for breakers in processes:
            await breakers.stop()
        await drop_keys(prefix)

    asyncio.run(both_processes_see_the_failures())
    assert first.flush() + second.flush() == 1  # the one opening, in the history of the process that made it

    assert list(AlertDelivery.objects.values_list("channel__name", "payload__deployment__id")) == [("on call", ROUTE)]
