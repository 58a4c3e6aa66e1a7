"""Limits and budgets kept in this process.

The limiter of a Portico without Redis, and `RedisLimiter`'s stand-in while
Redis cannot be reached. It is the acquire and settle scripts of scripts.py
written in Python, step for step, so both answer every question alike; what
it cannot do is share anything with other processes.

No method awaits anything, so on one event loop each call runs to completion
before another starts: that is all the locking it needs. Its slots in flight
are renewed while held (leases.py), as `RedisLimiter`'s are: a slot's lease
means the same in both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence

from billing.limits.leases import LeaseKeeper
from billing.limits.verdicts import (
    DEBT_MAX_MS,
    MINUTE_MS,
    NEVER,
    SLACK_MS,
    Ask,
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

_SWEEP_MS = 60_000.0

Bucket = tuple[str, str]  # (scope, "req" or "tok")


class LocalLimiter:
    def __init__(self, *, lease: float | None = None, clock: Callable[[], float] = time.time) -> None:
        """`lease`: seconds a slot in flight outlives its last renewal (default PORTICO_IN_FLIGHT_LEASE)."""
        lease = in_flight_lease(lease)
        self._lease_ms = lease * 1000
        self.leases = LeaseKeeper(self.renew, lease=lease)
        self._clock = clock  # Unix seconds
        self._buckets: dict[Bucket, float] = {}  # when each bucket is full again (ms)
        self._flights: dict[str, dict[str, float]] = {}  # scope -> request id -> end of its lease (ms)
        self._counters: dict[tuple[str, str], list[float]] = {}  # (scope, period) -> [nano-USD, expiry ms]
        self._next_sweep = 0.0

    async def acquire(self, ask: Ask) -> Verdict:
        if nothing_to_check(ask):
            return unlimited_verdict(ask, local=True)
        ask = bounded(ask)
        verdict = verdict_from_reply(ask, self._check(ask), local=True)
        if verdict.ticket is not None:
            self.leases.hold(verdict.ticket)
        return verdict

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[None]:
        return self.settle(ticket, tokens=tokens, cost=cost)

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None:
        self.leases.let_go(ticket)
        now = self._clock() * 1000
        tokens, cost = clamp(tokens), clamp(cost)
        extra = tokens - ticket.tokens
        for scope, limit in ticket.token_limits:
            if extra and limit > 0:
                key = (scope, "tok")
                state = max(self._buckets.get(key, now), now) + extra * (MINUTE_MS / limit)
                state = min(state, now + DEBT_MAX_MS)
                if state > now:
                    self._buckets[key] = state
                else:
                    self._buckets.pop(key, None)
        for scope in ticket.concurrency_scopes:
            self._flights.get(scope, {}).pop(ticket.request_id, None)
        for period in ticket.budget_periods:
            counter = self._counters.get(period)
            if cost != ticket.cost and counter is not None and counter[1] > now:
                counter[0] += cost - ticket.cost

    async def renew(self, tickets: Sequence[Ticket]) -> None:
        """Extend the lease of each ticket's slots in flight that are still held (the renew script)."""
        now = self._clock() * 1000
        for ticket in tickets:
            for scope in ticket.concurrency_scopes:
                held = self._flights.get(scope)
                ends = held.get(ticket.request_id) if held is not None else None
                if held is not None and ends is not None and ends > now:
                    held[ticket.request_id] = math.ceil(now + self._lease_ms)  # whole ms, as the scripts keep it

    async def aclose(self) -> None:
        await self.leases.aclose()

    def _check(self, ask: Ask) -> list[int]:
        """Check every limit of `ask`, reserve all or nothing, and report as the acquire script does."""
        now = self._clock() * 1000
        self._sweep(now)
        reply = [1, math.floor(now)]
        ok = True
        buckets: list[tuple[Bucket, int, float, float, int]] = []
        flights: list[dict[str, float]] = []
        counters: list[list[float]] = []
        for window in ask.windows:
            for kind, limit, amount in (("req", window.rpm, 1), ("tok", window.tpm, ask.tokens)):
                if limit is None:
                    continue
                key = (window.scope, kind)
                base = max(self._buckets.get(key, now), now)
                after, wait = base, 0
                if limit <= 0 or amount > limit:
                    wait = NEVER
                else:
                    after = base + amount * (MINUTE_MS / limit)
                    most = ceiling(limit, ask.share, amount=amount)
                    span = most * (MINUTE_MS / limit) if most < limit else MINUTE_MS
                    late = after - now - span
                    if late > SLACK_MS:
                        wait = math.ceil(late)
                ok = ok and wait == 0
                buckets.append((key, limit, base, after, len(reply)))
                reply += (wait, 0, 0)
            if window.concurrency is not None:
                held = self._flights.setdefault(window.scope, {})
                for member in [member for member, end in held.items() if end <= now]:
                    del held[member]
                ok = ok and len(held) < ceiling(window.concurrency, ask.share)
                reply.append(len(held))
                flights.append(held)
        for budget in ask.budgets:
            counter = self._counters.get((budget.scope, budget.period))
            if counter is None or counter[1] <= now:
                expiry = now + budget.ttl * 1000 if budget.ttl > 0 else math.inf
                counter = self._counters[(budget.scope, budget.period)] = [budget.spent, expiry]
            elif counter[0] < budget.spent:
                counter[0] = budget.spent
            ok = ok and counter[0] < budget.limit
            reply.append(int(counter[0]))
            counters.append(counter)

        if ok:
            for held in flights:
                held[ask.request_id] = math.ceil(now + self._lease_ms)  # whole ms, as the scripts keep it
            if ask.cost > 0:
                for counter in counters:
                    counter[0] += ask.cost
        else:
            reply[0] = 0
        for key, limit, base, after, slot in buckets:
            state = after if ok else base
            if state > base:
                self._buckets[key] = state
            if limit > 0:
                reply[slot + 1] = math.floor((MINUTE_MS - (state - now)) / (MINUTE_MS / limit) + 1e-6)
            reply[slot + 2] = math.ceil(state - now - 1e-6)
        return reply

    def _sweep(self, now: float) -> None:
        """Forget full buckets, free scopes and finished periods, as Redis expires idle keys."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_MS
        self._buckets = {key: full_at for key, full_at in self._buckets.items() if full_at > now}
        self._flights = {
            scope: held for scope, held in self._flights.items() if any(end > now for end in held.values())
        }
        self._counters = {key: counter for key, counter in self._counters.items() if counter[1] > now}
