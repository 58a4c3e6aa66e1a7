"""Limits and budgets shared by every Portico process through Redis.

One acquire is one EVALSHA of the acquire script: every window and budget of
the request is checked, and reserved only if all pass; a key whose calls come
steadily has its next call's acquire made ahead, off that call's path
(spares.py). One settle is one EVALSHA of the settle script. Keys (keys.py
has the names, and the hash tags that keep one call's keys in one slot of a
Redis Cluster):

    RPM bucket   when it is full again (ms), expires once full
    TPM bucket   likewise
    in flight    sorted set of request ids, scored by the end of their lease
    budget       nano-USD spent + reserved, expiring with the period

The connection is the hand-written one (resp.py) on a single Redis and
redis-py's cluster client on a cluster (clients.py says why).

A slot in flight is held for a lease (PORTICO_IN_FLIGHT_LEASE) that the
process renews while the call runs: one EVALSHA of the renew script for all
its slots every third of the lease (leases.py), none per request.

When Redis does not answer, `on_redis_error` decides: "open" keeps serving
with a `LocalLimiter` (limits then hold per process) and says so in the log,
at most every 30 s; "closed" raises `LimiterUnavailable`. Either way Redis is
tried again after `recheck` seconds, and the settles it missed are sent first
once it answers, so a short outage does not hold concurrency slots for a
whole lease.

Not every error reply is an outage: a script that fails on one request's keys
or arguments (a counter holding something else, a value out of range) is a bug
in that request. It raises `LimiterFailed` for that request alone, which the
scripts leave without a reservation, and Redis stays in use for every other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from redis.exceptions import NoScriptError, RedisError, ResponseError

from billing.limits.clients import LimiterClient, limiter_client
from billing.limits.keys import budget_key, shard_of, stem, window_key
from billing.limits.leases import LeaseKeeper
from billing.limits.local import LocalLimiter
from billing.limits.resp import RespClient, Run
from billing.limits.scripts import ACQUIRE, RENEW, SETTLE, Script
from billing.limits.spares import Spares
from billing.limits.verdicts import (
    Ask,
    LimiterFailed,
    LimiterUnavailable,
    Ticket,
    Verdict,
    bounded,
    ceiling,
    clamp,
    in_flight_lease,
    nothing_to_check,
    unlimited_verdict,
    verdict_from_reply,
)

logger = logging.getLogger(__name__)

ALARM_INTERVAL = 30.0  # seconds between two log lines about the same outage
UNSETTLED_MAX = 10_000  # settles kept for replay; beyond that the oldest are left to their leases
REPLAY_BATCH = 200
# Keys' packed acquires and settles kept, the oldest given up first: each snapshot reload (every few seconds)
# brings new windows tuples, so old shapes go stale while the active keys' are made again.
SHAPES_MAX = 4096
# Error replies that describe Redis's state rather than the request: every request would get them alike.
OUTAGE_REPLIES = frozenset(
    {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "MISCONF", "NOAUTH", "WRONGPASS", "NOPERM", "TRYAGAIN"}
)

Args = list[str | int | float]


class RedisLimiter:
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        on_redis_error: Literal["open", "closed"] = "open",
        lease: float | None = None,
        clock: Callable[[], float] | None = None,
        socket_timeout: float = 0.25,
        recheck: float = 1.0,
        cluster: bool | None = None,
        client: LimiterClient | None = None,
        spares: bool | None = None,
    ) -> None:
        """`clock` (Unix seconds) replaces Redis's own clock; for tests, as every process must share one clock.

        `lease`: seconds a slot in flight outlives its last renewal (default PORTICO_IN_FLIGHT_LEASE).
        `cluster`: `url` is a node of a Redis Cluster (default PORTICO_REDIS_CLUSTER). `client`: the
        connection to use instead of the one `url` and `cluster` choose (the benchmark compares them).
        `spares`: keep a reservation ready for a key's next call (spares.py; default PORTICO_LIMIT_SPARES).
        """
        if on_redis_error not in ("open", "closed"):
            raise ValueError(f"on_redis_error must be 'open' or 'closed', not {on_redis_error!r}")
        if cluster is None:
            from django.conf import settings

            cluster = settings.PORTICO_REDIS_CLUSTER
        self._cluster = cluster
        self._client = client or limiter_client(url, timeout=socket_timeout, cluster=cluster)
        self._prefix = prefix
        self._fail_open = on_redis_error == "open"
        lease = in_flight_lease(lease)
        self._lease_ms = lease * 1000
        self._clock = clock
        self._recheck = recheck
        self._local = LocalLimiter(lease=lease, clock=clock or time.time)  # its own keeper renews its slots
        self.leases = LeaseKeeper(self.renew, lease=lease)
        self._down = False
        self._retry_at = 0.0  # monotonic time before which Redis is not tried again
        self._alarmed_at = -math.inf
        self._alarm_open = False
        self._unsettled: deque[tuple[Ticket, int, int]] = deque(maxlen=UNSETTLED_MAX)
        # Each key's acquire and settle, packed but for what changes from call to call (`_acquire_command`);
        # only for the hand-written connection, which sends a `Run` as it is.
        self._shaped = isinstance(self._client, RespClient)
        self._acquire_shapes: dict[tuple[int, int], tuple[Any, Any, Run, Run]] = {}
        self._settle_shapes: dict[tuple[Any, ...], tuple[Run, Run]] = {}
        # Settles sent again after a NOSCRIPT reply, and those giving back an acquire whose caller left.
        self._retries: set[asyncio.Future[Any]] = set()
        if spares is None:
            from django.conf import settings

            spares = settings.PORTICO_LIMIT_SPARES
        # Spares are written with the turn's other commands, which only the hand-written connection does.
        self.spares = (
            Spares(send=self._send_spare, give_back=self._give_back_spare, hold=self.leases.hold)
            if spares and self._shaped
            else None
        )

    async def acquire(self, ask: Ask) -> Verdict:
        if nothing_to_check(ask):
            return unlimited_verdict(ask, local=False)
        if self._down and not await self._redis_back():
            return await self._without_redis(ask, None)
        ask = bounded(ask)
        if self._cluster and not ask.shard:
            ask = replace(ask, shard=shard_of(ask))
        spares = self.spares if ask.share >= 1 else None  # a batch line's ceiling depends on its own tokens
        if spares is not None:
            taken = spares.take(ask)
            if taken is None and (coming := spares.coming(ask)) is not None:
                taken = await coming
            if taken is not None:
                return taken
        try:
            reply: bytes = await self._run_command(
                ACQUIRE, self._acquire_command(ask), orphan=functools.partial(self._give_back_orphan, ask)
            )
        except ResponseError as exc:
            if not is_outage(exc):
                logger.error("The rate limiter's acquire script failed for request %s: %s", ask.request_id, exc)
                raise LimiterFailed(str(exc)) from exc
            self._trouble(exc)
            return await self._without_redis(ask, exc)
        except (RedisError, OSError) as exc:
            self._trouble(exc)
            return await self._without_redis(ask, exc)
        verdict, values = _judged(ask, reply)
        if verdict.ticket is not None:
            self.leases.hold(verdict.ticket)
            if spares is not None:
                spares.after(ask, values)
        return verdict

    def _send_spare(self, ask: Ask) -> asyncio.Future[Any] | None:
        """Ask for a spare (spares.py) with the turn's other commands; None when no connection is open."""
        if self._down:
            return None
        return self._client.send_soon(*self._acquire_command(ask))

    def _give_back_spare(self, ask: Ask, ticket: Ticket) -> None:
        """Give back all a spare reserved, as for a call that ends before it begins, and its request too: no
        call used it. The settle is kept until done, so closing the limiter waits for it."""
        self._keep(asyncio.ensure_future(self.settle_soon(ticket, tokens=0, cost=0)))
        if not self._down and (command := self._requests_back_command(ask)) is not None:
            # Its reply matters to nobody: a request left counted only keeps the bucket a little fuller.
            reply = self._client.send_soon(*command)
            if reply is not None:
                self._keep(reply)

    def _keep(self, given_back: asyncio.Future[Any]) -> None:
        """Keep a give-back until it is done, so that closing the limiter waits for it."""
        self._retries.add(given_back)
        given_back.add_done_callback(self._kept)

    def _kept(self, given_back: asyncio.Future[Any]) -> None:
        self._retries.discard(given_back)
        if not given_back.cancelled():
            given_back.exception()  # looked at, so that asyncio does not log it: settle_soon dealt with it

    def _requests_back_command(self, ask: Ask) -> tuple[Any, ...] | None:
        """The settle script run on `ask`'s RPM buckets alone, giving back the one request each counted."""
        start = self._stem(ask.shard)
        rpms = [(window_key(start, window.scope, "req"), window.rpm) for window in ask.windows if window.rpm]
        if not rpms:
            return None
        keys = [key for key, _ in rpms]
        args: Args = [self._now_arg(), ask.request_id, -1, 0, len(rpms), 0, 0, *(rpm for _, rpm in rpms)]
        return ("EVALSHA", SETTLE.sha, len(keys), *keys, *args)

    def _give_back_orphan(self, ask: Ask, reply: bytes) -> None:
        """An acquire's reply that came after its caller was cancelled (its client left): what it reserved is
        given back at once, as for a call that ends before it begins, not held until its slot's lease runs out."""
        try:
            verdict, _ = _judged(ask, reply)
        except ValueError:
            logger.error("The rate limiter's acquire script sent a reply it cannot read: %r", reply)
            return
        if verdict.ticket is None:
            return
        # A future of the settle's reply, or on a rare path (Redis away) a coroutine to run.
        self._keep(asyncio.ensure_future(self.settle_soon(verdict.ticket, tokens=0, cost=0)))

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None:
        """Never raises for Redis trouble: nobody could act on it, and Redis gets the settle once it is back."""
        if ticket.local:
            await self._local.settle(ticket, tokens=tokens, cost=cost)
            return
        if ticket.empty:
            return
        self.leases.let_go(ticket)
        tokens, cost = clamp(tokens), clamp(cost)
        if self._down and not await self._redis_back():
            self._unsettled.append((ticket, tokens, cost))
            return
        # Written at once on the one connection, ahead of any acquire the client's next request makes: a
        # client that waits for its answer before asking again never meets its own concurrency slot.
        try:
            await self._run_command(SETTLE, self._settle_command(ticket, tokens, cost))
        except ResponseError as exc:
            if is_outage(exc):
                self._trouble(exc)
                self._unsettled.append((ticket, tokens, cost))
            else:  # it would fail again: the reservation is left to expire with its lease
                logger.error("The rate limiter's settle script failed for request %s: %s", ticket.request_id, exc)
        except (RedisError, OSError) as exc:
            self._trouble(exc)
            self._unsettled.append((ticket, tokens, cost))

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[Any]:
        """`settle`, written to Redis at the end of this step, its reply handled by a callback rather than a task.

        Every admitted request settles once: a task per settle cost the hot path more than the settle's
        own work. The write waits for the step that finishes the call to end, so the answer it goes on to
        write reaches the client first (one system call less before it, about 30 µs on one client); it
        still goes ahead of any acquire made in a later step, the client's next request's included, so a
        client that waits for its answer before asking again never meets its own concurrency slot.

        The returned future completes with the reply; an error in it is dealt with here as `settle` deals
        with it (logged, or kept to send again), so whoever awaits it may ignore it. The rare paths
        (a local ticket, Redis away, no connection yet) are `settle` itself, a coroutine.
        """
        if ticket.local or ticket.empty or self._down:
            return self.settle(ticket, tokens=tokens, cost=cost)
        tokens, cost = clamp(tokens), clamp(cost)
        reply = self._client.send_soon(*self._settle_command(ticket, tokens, cost))
        if reply is None:
            return self.settle(ticket, tokens=tokens, cost=cost)
        self.leases.let_go(ticket)
        reply.add_done_callback(functools.partial(self._settled, ticket, tokens, cost))
        return reply

    def _settled(self, ticket: Ticket, tokens: int, cost: int, reply: asyncio.Future[Any]) -> None:
        """What `settle` does with an error, for a settle sent by `settle_soon`."""
        if reply.cancelled():
            return
        exc = reply.exception()
        if exc is None:
            return
        if isinstance(exc, NoScriptError):  # Redis restarted or its scripts were flushed: `settle` loads it
            retry = asyncio.get_running_loop().create_task(self.settle(ticket, tokens=tokens, cost=cost))
            self._retries.add(retry)
            retry.add_done_callback(self._retries.discard)
        elif isinstance(exc, ResponseError) and not is_outage(exc):
            logger.error("The rate limiter's settle script failed for request %s: %s", ticket.request_id, exc)
        elif isinstance(exc, (RedisError, OSError)):
            self._trouble(exc)
            self._unsettled.append((ticket, tokens, cost))

    async def renew(self, tickets: Sequence[Ticket]) -> None:
        """Extend the lease of the tickets' slots in flight that are still held. Never raises for Redis trouble:
        the next renewal tries again, and a slot whose lease ran out meanwhile stays free."""
        tickets = [ticket for ticket in tickets if not ticket.local]
        if not tickets or (self._down and not await self._redis_back()):
            return
        for batch in self._renew_batches(tickets):
            try:
                await self._run(RENEW, *self._renew_call(batch))
            except ResponseError as exc:
                if is_outage(exc):
                    self._trouble(exc)
                    return
                logger.error("The rate limiter's renew script failed: %s", exc)
            except (RedisError, OSError) as exc:
                self._trouble(exc)
                return

    async def _settle_pipeline(self, settles: list[tuple[Ticket, int, int]]) -> list[Any]:
        """Send settles back to back on the one connection; a reply error comes back in place of its result."""
        calls = [self._client.call(*self._settle_command(ticket, tokens, cost)) for ticket, tokens, cost in settles]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        lost = next((reply for reply in replies if isinstance(reply, OSError)), None)
        if lost is not None:
            raise lost
        return replies

    async def aclose(self) -> None:
        if self.spares is not None:
            await self.spares.aclose()
        if self._retries:
            await asyncio.gather(*self._retries, return_exceptions=True)
        await self.leases.aclose()
        await self._local.aclose()
        await self._client.aclose()

    def _now_arg(self) -> str | float:
        return "" if self._clock is None else self._clock() * 1000

    def _acquire_call(self, ask: Ask) -> tuple[list[str], Args]:
        keys: list[str] = []
        args: Args = [self._now_arg(), ask.request_id, ask.tokens, ask.cost, self._lease_ms]
        args += (len(ask.windows), len(ask.budgets))
        start = self._stem(ask.shard)
        for window in ask.windows:
            if window.rpm is not None:
                keys.append(window_key(start, window.scope, "req"))
            if window.tpm is not None:
                keys.append(window_key(start, window.scope, "tok"))
            if window.concurrency is not None:
                keys.append(window_key(start, window.scope, "cc"))
            args += (_limit(window.rpm), _limit(window.tpm), _most(window.concurrency, ask.share))
            args += (_most(window.rpm, ask.share), _most(window.tpm, ask.share, amount=ask.tokens))
        for budget in ask.budgets:
            keys.append(budget_key(start, budget.scope, budget.period))
            args += (budget.limit, budget.spent, budget.ttl)
        return keys, args

    def _acquire_command(self, ask: Ask) -> tuple[Any, ...]:
        """EVALSHA of the acquire script for `ask`: `_acquire_call`'s keys and arguments, most of them packed once.

        Past the first four arguments (the time, the request id, its tokens and cost) an acquire's arguments
        depend only on its windows and budgets, which the metering hands over as the same tuples call after
        call, unless a call may fill only a share of its limits (a batch line): its token ceiling depends on
        its tokens, so it is packed whole.
        """
        windows, budgets = ask.windows, ask.budgets
        if not self._shaped or ask.share < 1:
            keys, args = self._acquire_call(ask)
            return ("EVALSHA", ACQUIRE.sha, len(keys), *keys, *args)
        # By identity: a shape keeps its tuples alive, so no other tuple can take their ids while it is kept.
        # (On a single Redis, the only kind shapes are kept for, the shard is part of no key.)
        memo = (id(windows), id(budgets))
        shape = self._acquire_shapes.get(memo)
        if shape is None:
            keys, args = self._acquire_call(ask)
            shape = (windows, budgets, Run((ACQUIRE.sha, len(keys), *keys)), Run(tuple(args[4:])))
            if len(self._acquire_shapes) >= SHAPES_MAX:
                del self._acquire_shapes[next(iter(self._acquire_shapes))]
            self._acquire_shapes[memo] = shape
        return ("EVALSHA", shape[2], self._now_arg(), ask.request_id, ask.tokens, ask.cost, shape[3])

    def _settle_command(self, ticket: Ticket, tokens: int, cost: int) -> tuple[Any, ...]:
        """EVALSHA of the settle script: `_settle_call`'s keys and arguments, all but the first four packed once."""
        if not self._shaped:
            keys, args = self._settle_call(ticket, tokens, cost)
            return ("EVALSHA", SETTLE.sha, len(keys), *keys, *args)
        memo = (ticket.token_limits, ticket.concurrency_scopes, ticket.budget_periods)
        shape = self._settle_shapes.get(memo)
        if shape is None:
            keys, args = self._settle_call(ticket, tokens, cost)
            shape = (Run((SETTLE.sha, len(keys), *keys)), Run(tuple(args[4:])))
            if len(self._settle_shapes) >= SHAPES_MAX:
                del self._settle_shapes[next(iter(self._settle_shapes))]
            self._settle_shapes[memo] = shape
        extra, cost_delta = tokens - ticket.tokens, cost - ticket.cost
        return ("EVALSHA", shape[0], self._now_arg(), ticket.request_id, extra, cost_delta, shape[1])

    def _settle_call(self, ticket: Ticket, tokens: int, cost: int) -> tuple[list[str], Args]:
        start = self._stem(ticket.shard)
        keys = [window_key(start, scope, "tok") for scope, _ in ticket.token_limits]
        keys += [window_key(start, scope, "cc") for scope in ticket.concurrency_scopes]
        keys += [budget_key(start, scope, period) for scope, period in ticket.budget_periods]
        args: Args = [self._now_arg(), ticket.request_id, tokens - ticket.tokens, cost - ticket.cost]
        args += (len(ticket.token_limits), len(ticket.concurrency_scopes), len(ticket.budget_periods))
        args += [limit for _, limit in ticket.token_limits]
        return keys, args

    def _renew_call(self, tickets: Sequence[Ticket]) -> tuple[list[str], Args]:
        keys: list[str] = []
        args: Args = [self._now_arg(), self._lease_ms]
        for ticket in tickets:
            start = self._stem(ticket.shard)
            for scope in ticket.concurrency_scopes:
                keys.append(window_key(start, scope, "cc"))
                args.append(ticket.request_id)
        return keys, args

    def _renew_batches(self, tickets: Sequence[Ticket]) -> list[Sequence[Ticket]]:
        """Tickets to renew a round trip at a time: on a cluster, one shard (so one slot) per script."""
        if not self._cluster:
            return [tickets[start : start + REPLAY_BATCH] for start in range(0, len(tickets), REPLAY_BATCH)]
        shards: dict[str, list[Ticket]] = {}
        for ticket in tickets:
            shards.setdefault(ticket.shard, []).append(ticket)
        return [
            group[start : start + REPLAY_BATCH]
            for group in shards.values()
            for start in range(0, len(group), REPLAY_BATCH)
        ]

    def _stem(self, shard: str) -> str:
        return stem(self._prefix, shard, cluster=self._cluster)

    async def _run(self, script: Script, keys: Sequence[str], args: Args) -> Any:
        return await self._run_command(script, ("EVALSHA", script.sha, len(keys), *keys, *args))

    async def _run_command(
        self, script: Script, command: tuple[Any, ...], *, orphan: Callable[[Any], None] | None = None
    ) -> Any:
        try:
            return await self._client.call(*command, orphan=orphan)
        except NoScriptError:
            # Redis restarted or its script cache was flushed.
            await self._client.call("SCRIPT", "LOAD", script.source)
            return await self._client.call(*command, orphan=orphan)

    async def _without_redis(self, ask: Ask, exc: Exception | None) -> Verdict:
        if self._fail_open:
            return await self._local.acquire(ask)
        raise LimiterUnavailable("rate limits and budgets cannot be checked: Redis does not answer") from exc

    def _trouble(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down = True
        self._retry_at = now + self._recheck
        if now - self._alarmed_at >= ALARM_INTERVAL:
            self._alarmed_at = now
            self._alarm_open = True
            consequence = (
                "enforcing limits in each process alone" if self._fail_open else "refusing every limited request"
            )
            logger.error("Redis does not answer the rate limiter (%r); %s until it does", exc, consequence)

    async def _redis_back(self) -> bool:
        """Whether Redis answers again, after an outage; if so it first gets the settles it missed.

        They go in a few round trips, before any new request is checked, so the slots
        of requests that ended during the outage are free again.
        """
        if time.monotonic() < self._retry_at:
            return False
        missed = list(self._unsettled)
        self._unsettled.clear()  # taken now: a concurrent call must not send them twice
        # Batches keep each round trip well inside the socket timeout; an empty one is the probe.
        for start in range(0, max(len(missed), 1), REPLAY_BATCH):
            try:
                await self._client.call("SCRIPT", "LOAD", SETTLE.source)
                # A settle that Redis refuses (not one it never got) would fail again: it is not kept.
                await self._settle_pipeline(missed[start : start + REPLAY_BATCH])
            except (RedisError, OSError) as exc:
                self._unsettled.extendleft(reversed(missed[start:]))
                self._trouble(exc)
                return False
        self._down = False
        if self._alarm_open:  # a flapping Redis is one error and one all-clear per ALARM_INTERVAL
            self._alarm_open = False
            logger.warning("Redis answers the rate limiter again; limits are shared across processes again")
        return True


def _judged(ask: Ask, reply: bytes) -> tuple[Verdict, list[int]]:
    """The acquire script's reply, one string of integers, as a verdict on `ask`, and those integers."""
    values = list(map(int, reply.split()))
    return verdict_from_reply(ask, values, local=False), values


def is_outage(exc: ResponseError) -> bool:
    """Whether an error reply says Redis cannot serve anyone now, rather than that this call was wrong."""
    return isinstance(exc, NoScriptError) or str(exc).partition(" ")[0] in OUTAGE_REPLIES


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _most(limit: int | None, share: float, *, amount: int = 1) -> int:
    return -1 if limit is None else ceiling(limit, share, amount=amount)
