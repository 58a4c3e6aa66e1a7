"""The Redis scripts and the local limiter answer a long mixed sequence of calls alike, verdict for verdict.

test_limits.py checks each rule against both limiters one case at a time;
this drives both through the same random sequence (windows of small limits
met and refused, budgets, settles above and below the reservation, slots left
unsettled until their lease ends, the clock moving in steps large and small)
and compares every verdict whole: allowed or not, why, the message, the
retry-after and the rate-limit headers.
"""

from __future__ import annotations

import random
import uuid

import pytest

from billing.limits import Ask, Budget, LocalLimiter, RedisLimiter, Ticket, Verdict, Window
from billing.tests.test_limits import REDIS_URL, USD, FakeClock, drop_keys, new_prefix

LEASE = 10.0
OPERATIONS = 300


def random_ask(rng: random.Random) -> Ask:
    windows = []
    if rng.random() < 0.8:
        windows.append(
            Window(
                "key:1",
                "this API key",
                rpm=rng.choice((None, 4, 9)),
                tpm=rng.choice((None, 400, 2_000)),
                concurrency=rng.choice((None, 1, 3)),
            )
        )
    if rng.random() < 0.6:
        windows.append(
            Window("tenant:1", "this organization", rpm=rng.choice((None, 6)), concurrency=rng.choice((None, 2)))
        )
    budgets = (Budget("tenant:1", "this organization", "2026-11", 3 * USD, 0, 3600),) if rng.random() < 0.5 else ()
    return Ask(uuid.uuid4().hex, tuple(windows), budgets, tokens=rng.randrange(0, 500), cost=rng.randrange(0, USD // 4))


def seen(verdict: Verdict) -> tuple[object, ...]:
    return (verdict.allowed, verdict.refused, verdict.message, verdict.retry_after, verdict.headers)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_scripts_and_the_local_limiter_give_the_same_verdicts_over_a_random_sequence(
    seed: int,
) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    prefix = new_prefix()
    shared = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock, lease=LEASE)
    local = LocalLimiter(clock=clock, lease=LEASE)
    held: list[tuple[Ticket, Ticket]] = []
    refusals = 0
    try:
        for step in range(OPERATIONS):
            roll = rng.random()
            if roll < 0.55:
                request = random_ask(rng)
                verdicts = (await shared.acquire(request), await local.acquire(request))
                assert seen(verdicts[0]) == seen(verdicts[1]), f"seed {seed}, step {step}: {request}"
                refusals += not verdicts[0].allowed
                if verdicts[0].ticket is not None and verdicts[1].ticket is not None:
                    held.append((verdicts[0].ticket, verdicts[1].ticket))
            elif roll < 0.85 and held:
                # Settled with more or fewer tokens and cost than reserved; some are never settled at all.
                shared_ticket, local_ticket = held.pop(rng.randrange(len(held)))
                if rng.random() < 0.85:
                    tokens, cost = rng.randrange(0, 800), rng.randrange(0, USD // 3)
                    await shared.settle(shared_ticket, tokens=tokens, cost=cost)
                    await local.settle(local_ticket, tokens=tokens, cost=cost)
            else:
                clock.advance(LEASE + 1 if rng.random() < 0.1 else rng.uniform(0, 4))
    finally:
        await shared.aclose()
        await local.aclose()
        await drop_keys(prefix)

    assert refusals > OPERATIONS // 10  # the sequence reached its limits often, not only passed them
