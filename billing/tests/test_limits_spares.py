"""The reservation `RedisLimiter` keeps ready for a key whose calls come steadily (billing/limits/spares.py).

Each test drives a limiter on the real Redis as the metering does: one windows
tuple and one budgets tuple for a key, handed over call after call, and every
admitted call settled with what it used. Where a test checks Redis's counters,
it runs the same calls through a limiter without spares on a prefix of its own
and compares: a spare taken, given back or never asked for must leave them as
if there had been none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from billing.limits import Ask, Budget, RedisLimiter, Verdict, Window, spares
from billing.limits.scripts import ACQUIRE, RENEW, SETTLE
from billing.limits.spares import rebased
from billing.tests.test_limits import USD, FakeClock, budget, key, new_prefix, ticket_of
from tests.servers import free_port

ROOMY = (Window("key:1", "this API key", rpm=1000, tpm=1_000_000, concurrency=100),)
FUNDED = (budget(limit=1000 * USD),)
OTHER = (Window("key:2", "this API key", rpm=1000, tpm=1_000_000),)
# Powers of two, as a spare's own reservation is: a spare holds exactly one call's worth.
TOKENS, COST = 128, 2**20  # COST: about a tenth of a cent, in nano-USD


class Counted:
    """A limiter whose commands to Redis are counted, and among them those a caller waited for: an acquire that
    took a spare waited for none."""

    def __init__(self, limiter: RedisLimiter) -> None:
        self.limiter = limiter
        self.round_trips = 0
        self.commands = 0
        client: Any = limiter._client
        call, send_soon = client.call, client.send_soon

        async def counting(*args: Any, **options: Any) -> Any:
            self.round_trips += 1
            self.commands += 1
            return await call(*args, **options)

        def counting_soon(*args: Any) -> Any:
            self.commands += 1
            return send_soon(*args)

        client.call, client.send_soon = counting, counting_soon

    async def calls(
        self,
        count: int,
        windows: tuple[Window, ...] = ROOMY,
        budgets: tuple[Budget, ...] = FUNDED,
        *,
        tokens: int = TOKENS,
        cost: int = COST,
    ) -> list[Verdict]:
        """`count` calls of one key, one after the other, each settled at half its reservation before the next."""
        verdicts = []
        for _ in range(count):
            verdict = await self.limiter.acquire(Ask(uuid.uuid4().hex, windows, budgets, tokens, cost))
            verdicts.append(verdict)
            if verdict.ticket is not None:
                # An error in its reply is the limiter's to deal with (a NOSCRIPT is sent again): none is raised.
                settled = self.limiter.settle_soon(verdict.ticket, tokens=tokens // 2, cost=cost // 2)
                await asyncio.gather(settled, return_exceptions=True)
                await asyncio.gather(*self.limiter._retries)
            await until(lambda: self.limiter.spares is None or not self.limiter.spares._asked)  # its spare is in
        return verdicts


async def until(condition: Callable[[], bool]) -> None:
    """Wait for the limiter's callbacks to get there: Redis's replies reach them without anyone awaiting."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the limiter's replies never came")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # frozen: no bucket refills between calls, so counts compare exactly


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of these tests' own. The limiter's other tests flush the shared one's scripts (SCRIPT FLUSH is
    server-wide): a spare asked for then meets NOSCRIPT and is dropped, and the exact counts here become a race."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed, as for the rest of the suite"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = SyncRedis.from_url(url)
        for _ in range(500):
            try:
                client.ping()
                break
            except RedisConnectionError:
                time.sleep(0.01)
        for script in (ACQUIRE, SETTLE, RENEW):  # as any Redis the limiter has used holds them
            client.script_load(script.source)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def make(clock: FakeClock, redis_url: str) -> AsyncIterator[Callable[..., Counted]]:
    limiters: list[RedisLimiter] = []

    def make_counted(*, spares: bool = True, lease: float | None = None) -> Counted:
        limiter = RedisLimiter(redis_url, prefix=new_prefix(), clock=clock, spares=spares, lease=lease)
        limiters.append(limiter)
        return Counted(limiter)

    yield make_counted
    for limiter in limiters:
        await limiter.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def counters(redis: Redis, limiter: RedisLimiter) -> dict[str, Any]:
    """Every limit's state in Redis, by key name without the prefix: slots in flight, budget counters, and bucket
    times to within a microsecond (a token is 0.06 ms of a 1,000,000 TPM bucket, which no double holds exactly)."""
    prefix = limiter._prefix
    state: dict[str, Any] = {}
    async for name in redis.scan_iter(match=f"{prefix}:*"):
        short = name.decode().removeprefix(prefix)
        if await redis.type(name) == b"zset":
            state[short] = await redis.zcard(name)
        else:
            state[short] = pytest.approx(float(await redis.get(name)), abs=1e-3)
    return state


@pytest.fixture(autouse=True)
def steady(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls count as steady, and spares are kept, however slowly a busy machine runs a test."""
    monkeypatch.setattr(spares, "DENSE", 60.0)
    monkeypatch.setattr(spares, "SPARE_IDLE", 60.0)


@pytest.fixture
def quickly_idle(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(spares, "SPARE_IDLE", 0.02)
    return 0.02


async def test_a_steady_key_is_admitted_from_its_spare_without_a_round_trip(make: Callable[..., Counted]) -> None:
    counted = make()

    verdicts = await counted.calls(10)

    # The first call finds no steady stream yet, the second asks for a spare after its own acquire; from the third
    # on, each call takes the spare its predecessor left and asks for the next.
    assert [verdict.allowed for verdict in verdicts] == [True] * 10
    assert counted.round_trips == 2
    assert counted.limiter.spares is not None
    assert (counted.limiter.spares.taken, counted.limiter.spares.given_back) == (8, 0)
    # As without spares, each call's acquire (made ahead or not) and its settle; and the spare kept for the next.
    assert counted.commands == 2 * 10 + 1
    # The spare a call takes counted it when it was reserved: the tenth reservation, as without spares.
    assert verdicts[-1].headers["x-ratelimit-remaining-requests"] == str(1000 - 10)


async def test_a_call_whose_spare_is_still_on_the_way_waits_for_it_and_its_headers_count_its_own_calls(
    make: Callable[..., Counted], redis: Redis
) -> None:
    with_spares, without = make(), make(spares=False)
    limiter = with_spares.limiter

    verdicts = []
    for _ in range(6):  # back to back, as a busy client's are: each spare is asked for and the next call comes
        verdict = await limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST))
        assert verdict.ticket is not None
        verdicts.append(verdict)
        limiter.settle_soon(verdict.ticket, tokens=TOKENS // 2, cost=COST // 2)
    await until(lambda: not limiter._retries and limiter.spares is not None and not limiter.spares._asked)
    await without.calls(6)

    # Acquiring beside the spare on the way would have counted it against the call: 997 for the third.
    assert [verdict.headers["x-ratelimit-remaining-requests"] for verdict in verdicts] == [
        str(1000 - taken) for taken in range(1, 7)
    ]
    assert with_spares.round_trips == 2
    assert limiter.spares is not None
    assert (limiter.spares.taken, limiter.spares.given_back) == (4, 0)
    await limiter.aclose()
    assert await counters(redis, limiter) == await counters(redis, without.limiter)


async def test_a_call_cancelled_while_it_waits_for_the_spare_leaves_it_to_the_next(
    make: Callable[..., Counted],
) -> None:
    counted = make()
    limiter = counted.limiter
    await counted.calls(2)  # the second asked for a spare, now in
    spares_ = limiter.spares
    assert spares_ is not None
    assert len(spares_) == 1
    taken = await limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST))  # and asks for the next
    assert spares_.taken == 1
    assert spares_._asked

    waiting = asyncio.ensure_future(limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST)))
    await asyncio.sleep(0)  # it is waiting for the spare's reply
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: not spares_._asked)
    after = await limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST))

    assert spares_.taken == 2  # the next call took the spare the cancelled one had waited for
    assert counted.round_trips == 2
    assert taken.headers["x-ratelimit-remaining-requests"] == "997"
    assert after.headers["x-ratelimit-remaining-requests"] == "996"


async def test_a_reload_that_rebuilds_the_keys_windows_and_budgets_leaves_its_spare_to_its_next_call(
    make: Callable[..., Counted], redis: Redis
) -> None:
    with_spares, without = make(), make(spares=False)
    await with_spares.calls(2)  # the second asked for a spare, now in
    # A snapshot reload builds every key's limits afresh: equal windows, the budget's spend as the ledger has it now.
    windows = tuple(dataclasses.replace(window) for window in ROOMY)
    budgets = tuple(dataclasses.replace(cap, spent=cap.spent + 1) for cap in FUNDED)
    assert windows is not ROOMY
    assert windows == ROOMY

    verdicts = await with_spares.calls(2, windows, budgets)
    await without.calls(4)

    # Acquiring beside the spare kept under the old tuples would have counted it against the call: 995 for the third.
    assert [verdict.headers["x-ratelimit-remaining-requests"] for verdict in verdicts] == ["997", "996"]
    assert with_spares.round_trips == 2
    spares_ = with_spares.limiter.spares
    assert spares_ is not None
    assert (spares_.taken, spares_.given_back) == (2, 0)
    await with_spares.limiter.aclose()
    assert await counters(redis, with_spares.limiter) == await counters(redis, without.limiter)


async def test_without_spares_every_call_waits_for_its_acquire(make: Callable[..., Counted]) -> None:
    counted = make(spares=False)

    await counted.calls(10)

    assert counted.limiter.spares is None
    assert counted.round_trips == 10
    assert counted.commands == 2 * 10


@pytest.mark.parametrize(
    ("windows", "budgets", "count"),
    [
        ((key(rpm=200),), (), 220),
        ((key(tpm=200 * TOKENS),), (), 420),  # each call reserves TOKENS and settles half
        ((key(rpm=300), Window("tenant:1", "this organization", rpm=150)), (), 170),
        ((key(rpm=10_000),), (budget(limit=150 * COST),), 320),  # each call reserves COST and spends half
    ],
    ids=["rpm", "tpm", "tenant rpm", "budget"],
)
async def test_spares_admit_exactly_the_calls_the_limits_allow(
    make: Callable[..., Counted], windows: tuple[Window, ...], budgets: tuple[Budget, ...], count: int
) -> None:
    with_spares, without = make(), make(spares=False)

    verdicts = await with_spares.calls(count, windows, budgets)
    reference = await without.calls(count, windows, budgets)

    allowed = [verdict.allowed for verdict in verdicts]
    assert not all(allowed), "the calls never reached the limit"
    assert allowed == [verdict.allowed for verdict in reference]
    assert [verdict.refused for verdict in verdicts] == [verdict.refused for verdict in reference]
    assert with_spares.round_trips < sum(allowed) / 2  # spares did most of the admitting


async def test_a_spare_left_unused_is_given_back_whole(
    make: Callable[..., Counted], redis: Redis, quickly_idle: float
) -> None:
    with_spares, without = make(), make(spares=False)

    await with_spares.calls(5)
    assert len(with_spares.limiter.spares or ()) == 1
    await asyncio.sleep(quickly_idle * 3)
    await until(lambda: not with_spares.limiter._retries)
    await without.calls(5)

    assert with_spares.limiter.spares is not None
    assert len(with_spares.limiter.spares) == 0
    assert (with_spares.limiter.spares.taken, with_spares.limiter.spares.given_back) == (3, 1)
    assert await counters(redis, with_spares.limiter) == await counters(redis, without.limiter)


@pytest.mark.parametrize(("tokens", "cost"), [(TOKENS + 1, COST), (TOKENS, COST + 1)], ids=["tokens", "cost"])
async def test_a_call_larger_than_the_spare_gives_it_back_and_acquires(
    make: Callable[..., Counted], redis: Redis, tokens: int, cost: int
) -> None:
    with_spares, without = make(), make(spares=False)

    await with_spares.calls(3)
    await with_spares.calls(1, tokens=tokens, cost=cost)
    await with_spares.limiter.aclose()
    await without.calls(3)
    await without.calls(1, tokens=tokens, cost=cost)

    assert with_spares.round_trips == 3
    assert await counters(redis, with_spares.limiter) == await counters(redis, without.limiter)


LIMITS: dict[str, Callable[[int], tuple[tuple[Window, ...], tuple[Budget, ...]]]] = {
    "rpm": lambda n: ((key(rpm=n),), FUNDED),
    "tpm": lambda n: ((key(tpm=n * TOKENS),), FUNDED),
    "concurrency": lambda n: ((key(concurrency=n),), FUNDED),
    "budget": lambda n: (ROOMY, (budget(limit=n * COST),)),
    "tenant concurrency": lambda n: ((key(rpm=10_000), Window("tenant:1", "this organization", concurrency=n)), ()),
}


# After two calls (the first settled at half), these leave exactly ten calls' worth of room beyond the second call
# and a spare: the least that still gets one.
@pytest.mark.parametrize(
    ("limit", "least"), [("rpm", 13), ("tpm", 13), ("concurrency", 12), ("budget", 13), ("tenant concurrency", 12)]
)
@pytest.mark.parametrize("room", ["enough", "one call short"])
async def test_a_spare_is_asked_for_only_with_ten_calls_worth_of_room_left_on_every_limit(
    make: Callable[..., Counted], limit: str, least: int, room: str
) -> None:
    counted = make()
    windows, budgets = LIMITS[limit](least if room == "enough" else least - 1)

    await counted.calls(2, windows, budgets)

    assert counted.limiter.spares is not None
    assert len(counted.limiter.spares) == (1 if room == "enough" else 0)


async def test_closing_the_limiter_gives_its_spare_back(make: Callable[..., Counted], redis: Redis) -> None:
    with_spares, without = make(), make(spares=False)
    await with_spares.calls(4)
    await without.calls(4)

    await with_spares.limiter.aclose()

    assert await counters(redis, with_spares.limiter) == await counters(redis, without.limiter)


async def test_a_spare_holds_a_slot_in_flight_that_its_process_renews(
    make: Callable[..., Counted], clock: FakeClock, redis: Redis
) -> None:
    counted = make(lease=0.3)  # renewed every 0.1 s
    await counted.calls(3)
    slots = f"{counted.limiter._prefix}:rl:key:1:cc"
    [(spare, taken)] = await redis.zrange(slots, 0, -1, withscores=True)  # the calls were settled

    clock.advance(0.2)  # within the lease, which a renewal moves on from the time it runs
    await asyncio.sleep(0.25)  # two renewals or more

    assert spare.decode().startswith("spare-")
    assert await redis.zscore(slots, spare) == taken + 200


@pytest.mark.parametrize("tokens", [128, 100, 65, 1, 0])
async def test_a_reply_rebased_on_fewer_tokens_reads_as_the_script_would_have_answered_them(
    make: Callable[..., Counted], tokens: int
) -> None:
    windows = (key(rpm=1000, tpm=100_000), Window("tenant:1", "this organization", rpm=500, tpm=30_000))
    rounded, exact = make(spares=False), make(spares=False)
    for counted in (rounded, exact):
        await counted.calls(3, windows, tokens=TOKENS)  # the same state in both

    async def reply(counted: Counted, reserved: int) -> list[int]:
        command = counted.limiter._acquire_command(Ask("the-call", windows, (), reserved, 0))
        return list(map(int, (await counted.limiter._client.call(*command)).split()))

    spare = await reply(rounded, 128)
    own = await reply(exact, tokens)
    got = rebased(spare, Ask("the-spare", windows, (), 128, 0), tokens)

    # After the admission and the time, each window's rpm (wait, remaining, reset), then its tpm's: only the
    # tpm's remaining and reset differ. The
    # script computes both from bucket times near 1.8e12 ms in doubles, where a token of these buckets (0.6 and
    # 2 ms) is no exact fraction: its own counts may land a unit either way, and so may the rebased ones.
    tpm_at = [6, 7, 12, 13]
    assert [value for at, value in enumerate(got) if at not in tpm_at] == [
        value for at, value in enumerate(own) if at not in tpm_at
    ]
    for at in tpm_at:
        assert abs(got[at] - own[at]) <= 1, (at, got, own)
    assert got[12] - spare[12] == 128 - tokens  # the tokens not reserved are left


async def test_a_spare_whose_reply_comes_while_the_limiter_closes_is_given_back_once(
    make: Callable[..., Counted], redis: Redis
) -> None:
    with_spares, without = make(), make(spares=False)
    await with_spares.calls(1)
    limiter = with_spares.limiter
    verdict = await limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST))  # asks for a spare
    settled = limiter.settle_soon(ticket_of(verdict), tokens=TOKENS // 2, cost=COST // 2)
    assert limiter.spares is not None
    assert limiter.spares._asked  # its reply still on the way

    await limiter.aclose()
    await settled
    await without.calls(2)

    assert await counters(redis, limiter) == await counters(redis, without.limiter)


async def test_a_call_that_takes_a_spare_while_the_limiter_closes_asks_for_no_other(
    make: Callable[..., Counted], redis: Redis
) -> None:
    with_spares, without = make(), make(spares=False)
    limiter = with_spares.limiter
    await with_spares.calls(2)  # ROOMY's spare is in
    await with_spares.calls(1, OTHER, ())
    other = await limiter.acquire(Ask(uuid.uuid4().hex, OTHER, (), TOKENS, 0))  # its spare's reply on the way
    settled = [limiter.settle_soon(ticket_of(other), tokens=TOKENS // 2, cost=0)]

    closing = asyncio.ensure_future(limiter.aclose())
    await asyncio.sleep(0)  # closing waits for that reply
    assert limiter.spares is not None
    asked: list[Ask] = []
    send = limiter.spares._send

    def counted_send(spare: Ask) -> asyncio.Future[bytes] | None:
        asked.append(spare)
        return send(spare)

    limiter.spares._send = counted_send
    taken = await limiter.acquire(Ask(uuid.uuid4().hex, ROOMY, FUNDED, TOKENS, COST))
    settled.append(limiter.settle_soon(ticket_of(taken), tokens=TOKENS // 2, cost=COST // 2))
    await asyncio.gather(*settled)
    await closing
    await without.calls(3)
    await without.calls(2, OTHER, (), cost=0)

    assert with_spares.round_trips == 4  # two of ROOMY, two of OTHER: the call during the close took a spare
    assert asked == []
    assert await counters(redis, limiter) == await counters(redis, without.limiter)


async def test_a_key_forgotten_for_newer_ones_has_its_spare_given_back(
    make: Callable[..., Counted], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spares, "SHAPES_MAX", 1)
    with_spares, without = make(), make(spares=False)

    for counted in (with_spares, without):
        await counted.calls(3)
        await counted.calls(2, OTHER, (), cost=0)  # the first of these forgets ROOMY's key, and its spare
    await until(lambda: not with_spares.limiter._retries)

    assert len(with_spares.limiter.spares or ()) == 1  # OTHER's
    assert with_spares.limiter.spares is not None
    assert [windows for windows, _ in with_spares.limiter.spares._signed] == [OTHER]  # ROOMY's went with its key
    await with_spares.limiter.aclose()
    assert await counters(redis, with_spares.limiter) == await counters(redis, without.limiter)
