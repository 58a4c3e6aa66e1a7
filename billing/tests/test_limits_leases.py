"""The keeper of a process's slots in flight: what it renews, together and in time, and what it stops renewing.

A stand-in records each renewal; the lease is a few hundredths of a second, so
a renewal is due every few milliseconds and the tests wait for renewals, never
for a lease to pass. What a renewal does to a slot is the limiters' part
(test_limits.py, both limiters from one table).
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from billing.limits import Ticket
from billing.limits.leases import LeaseKeeper

LEASE = 0.03  # a renewal every 10 ms


class Renewals:
    """Stands in for `Limiter.renew`: what each renewal was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, tickets: list[Ticket]) -> None:
        self.batches.append(sorted(ticket.request_id for ticket in tickets))
        self.arrived.set()

    async def next(self) -> list[str]:
        self.arrived.clear()
        async with asyncio.timeout(2):
            await self.arrived.wait()
        return self.batches[-1]


def ticket(request_id: str, *scopes: str) -> Ticket:
    return Ticket(request_id, 0, 0, (), scopes, ())


@pytest.fixture
def renewals() -> Renewals:
    return Renewals()


@pytest.fixture
def keeper(renewals: Renewals) -> LeaseKeeper:
    return LeaseKeeper(renewals, lease=LEASE)


async def test_every_slot_held_is_renewed_in_one_renewal_every_third_of_the_lease(
    keeper: LeaseKeeper, renewals: Renewals
) -> None:
    first, second = ticket("req_1", "tenant:1"), ticket("req_2", "tenant:1", "deployment:4")
    keeper.hold(first)
    keeper.hold(second)
    loop = asyncio.get_running_loop()

    started = loop.time()
    batches = [await renewals.next() for _ in range(3)]
    took = loop.time() - started

    assert batches == [["req_1", "req_2"]] * 3
    assert took < 3 * LEASE  # each renewal well within the lease it extends
    await keeper.aclose()


async def test_a_ticket_let_go_is_no_longer_renewed_and_the_keeper_stops_when_none_is_held(
    keeper: LeaseKeeper, renewals: Renewals
) -> None:
    first, second = ticket("req_1", "tenant:1"), ticket("req_2", "tenant:1")
    keeper.hold(first)
    keeper.hold(second)
    await renewals.next()

    keeper.let_go(first)
    after = await renewals.next()
    keeper.let_go(second)
    await asyncio.sleep(LEASE)  # a renewal's interval and more: a keeper still running would have renewed
    count = len(renewals.batches)
    await asyncio.sleep(LEASE)

    assert after == ["req_2"]
    assert len(renewals.batches) == count
    third = ticket("req_3", "tenant:1")
    keeper.hold(third)  # and it starts again for the next one
    assert await renewals.next() == ["req_3"]
    await keeper.aclose()


async def test_a_ticket_nobody_holds_any_more_is_not_renewed(keeper: LeaseKeeper, renewals: Renewals) -> None:
    kept = ticket("req_kept", "tenant:1")
    keeper.hold(kept)
    keeper.hold(ticket("req_dropped", "tenant:1"))  # dropped without a settle: its slot must lapse
    gc.collect()

    assert await renewals.next() == ["req_kept"]
    await keeper.aclose()


async def test_a_ticket_without_slots_in_flight_is_not_kept(keeper: LeaseKeeper, renewals: Renewals) -> None:
    keeper.hold(ticket("req_rate_only"))

    assert len(keeper) == 0
    await asyncio.sleep(LEASE)
    assert renewals.batches == []


async def test_a_ticket_let_go_under_a_reused_request_id_leaves_the_newer_one_held(keeper: LeaseKeeper) -> None:
    old, new = ticket("qjob_1", "tenant:1"), ticket("qjob_1", "tenant:1")  # a job's first run, then its next
    keeper.hold(old)
    keeper.hold(new)

    keeper.let_go(old)

    assert len(keeper) == 1
    await keeper.aclose()
