"""A reservation kept ready for a key's next call, so that a steady stream of limited calls waits for no round trip.

Admitting a call through Redis costs it a round trip before its upstream request
can start: about 0.2 ms on one machine, as much as the rest of Portico's work on
the call. While a key's calls come steadily, the limiter keeps one acquire ahead
of them: a spare, an ordinary reservation (one request, the last call's tokens
and cost rounded up to a power of two, a slot in flight, the budget's share)
made by the acquire script under a request id of its own. The next call of the
same key takes it as its own ticket without asking Redis, and a new spare is
asked for at once, in the same turn's write as the other commands:

    call n     acquire ──── round trip ────▶ admitted ; spare asked for (after the verdict, off the call's path)
    call n+1   the spare, if the call fits in it (its reply awaited if on the way) ▶ admitted ; next spare asked for
    no call for SPARE_IDLE s                 ▶ the spare is given back whole, its request included

Nothing is admitted that Redis did not reserve first, so limits and budgets hold
as exactly as before. What a spare can cost is the other way: while it waits it
holds one call's worth of every limit. It is asked for only when that cannot
matter:

- the key's calls are steady: the last one came less than DENSE s before;
- every limit would keep room after it: HEADROOM_SHARE of the limit, and at
  least HEADROOM_FLOOR calls' worth, beyond this call and the spare;
- one spare per key (per tuple of windows and budgets) and process at a time.

So a key near any of its limits never gets one, and one that stops calling has
its spare back within SPARE_IDLE s. A spare is held in Redis as any call in
flight, renewed by its process's lease keeper and given up with its lease if the
process dies; one whose reply is lost with the connection is left as a plain
acquire's would be (its slot lapses with its lease, its tokens refill, its
budget share stays counted until the period ends). A call that does not fit in the spare (more tokens or a higher
worst-case cost) gives it back and acquires as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from billing.limits.verdicts import MINUTE_MS, Ask, Ticket, Verdict, Window, verdict_from_reply

DENSE = 0.1  # seconds between two calls of a key for its calls to count as steady
# Seconds an unused spare is kept before it is given back: several DENSE gaps, so that a key calling about as
# often as DENSE allows rarely has its spare given back (two more round trips for Redis) just before it calls.
SPARE_IDLE = 0.5
HEADROOM_SHARE = 0.1  # the part of each limit that must stay free beyond the call and its spare
HEADROOM_FLOOR = 10  # ... and at least this many calls' worth of it
SHAPES_MAX = 4096  # keys tracked, the oldest given up first (a snapshot reload brings new tuples)

logger = logging.getLogger(__name__)

Memo = tuple[int, int]
# A spare's limits by value: the windows, and each budget's scope, period, limit and lifetime (not the spend a
# snapshot read, which each reload renews).
Signature = tuple[tuple[Window, ...], tuple[tuple[str, str, int, int], ...]]
Send = Callable[[Ask], "asyncio.Future[bytes] | None"]
GiveBack = Callable[[Ask, Ticket], None]
Hold = Callable[[Ticket], None]


@dataclass(slots=True)
class _Spare:
    ask: Ask
    verdict: Verdict | None = None  # in once Redis has admitted it
    ticket: Ticket | None = None  # the verdict's: what the spare holds
    reply: Sequence[int] = ()  # the acquire script's, which the verdict was read from
    room: bool = False  # whether its reply left room for another spare after it is taken
    timer: asyncio.TimerHandle | None = None
    coming: asyncio.Future[bytes] | None = None  # its reply, while on the way
    awaited: bool = False  # a call waits for its reply, to take it: no other call may take it meanwhile
    signature: Signature | None = None


@dataclass(slots=True)
class _Shape:
    seen: float  # loop time of the last acquire with these windows and budgets
    spare: _Spare | None = None


class Spares:
    """The spares of one limiter, by the identity of their calls' windows and budgets tuples."""

    def __init__(self, *, send: Send, give_back: GiveBack, hold: Hold) -> None:
        self._send = send
        self._give_back = give_back
        self._hold = hold
        self._shapes: dict[Memo, _Shape] = {}
        # Where the shape whose spare was asked with each signature is kept, to find it again once a snapshot
        # reload has built its key's windows and budgets afresh (new tuples, new ids, equal limits).
        self._signed: dict[Signature, Memo] = {}
        self._asked: set[asyncio.Future[bytes]] = set()  # replies still on the way
        self._closed = False
        # Running totals for /metrics (gateway.observability.gauges): calls that skipped the round trip, and
        # spares no call took, each of which cost Redis two more commands.
        self.taken = 0
        self.given_back = 0

    def __len__(self) -> int:
        """Spares held now (their reply in, not yet taken or given back)."""
        return sum(1 for shape in self._shapes.values() if shape.spare is not None and shape.spare.verdict)

    def take(self, ask: Ask) -> Verdict | None:
        """The verdict of the spare kept for `ask`'s windows and budgets, now `ask`'s own; None to acquire."""
        shape = self._shape(ask)
        if shape is None:
            return None
        spare = shape.spare
        if spare is None or spare.verdict is None or spare.awaited:  # none, its reply on the way, or promised
            return None
        shape.spare = None
        # The spare's ask keeps its windows and budgets alive, so no other tuples can have taken their ids.
        if ask.tokens > spare.ask.tokens or ask.cost > spare.ask.cost:
            self._release(spare)
            return None
        if spare.timer is not None:
            spare.timer.cancel()
        verdict, (ticket, spare.ticket) = spare.verdict, (spare.ticket, None)
        assert ticket is not None
        shape.seen = asyncio.get_running_loop().time()
        self.taken += 1
        if spare.room and not self._closed:
            self._ask_for(shape, ask, spare.signature)
        if ask.tokens != spare.ask.tokens:
            # Its headers count the tokens the call reserves, as OpenAI's do, not the spare's rounded-up share.
            verdict = verdict_from_reply(ask, rebased(spare.reply, spare.ask, ask.tokens), local=False)
            verdict.ticket = ticket
        return verdict

    def coming(self, ask: Ask) -> Awaitable[Verdict | None] | None:
        """For a call that `take` turned down because its spare's reply is still on the way: that reply, awaited and
        taken, when the call fits in it and no other call waits for it; None to acquire.

        The spare's acquire went to Redis before any this call could send, on the same connection, so its reply
        comes first: waiting for it is never slower than a round trip of the call's own. And a call that acquired
        beside a spare on the way would read Redis's counts with that spare in them, one request short of what its
        key has made: its headers would say so.
        """
        shape = self._shape(ask)
        if shape is None or self._closed:
            return None
        spare = shape.spare
        if spare is None or spare.coming is None or spare.awaited:
            return None
        if ask.tokens > spare.ask.tokens or ask.cost > spare.ask.cost:
            return None  # left for a later call, as `take` leaves it
        spare.awaited = True
        return self._taken_when_in(spare, spare.coming, ask)

    async def _taken_when_in(self, spare: _Spare, coming: asyncio.Future[bytes], ask: Ask) -> Verdict | None:
        try:
            # Not cancelled with the call (its client gone): the spare stays for the key's next call.
            await asyncio.wait((coming,))
        finally:
            spare.awaited = False
        # `_arrived` has run: it was called back before the wait's own callback, so before this resumes.
        return self.take(ask)

    def after(self, ask: Ask, reply: Sequence[int]) -> None:
        """`ask` was acquired the usual way with `reply`: ask for a spare if its key's calls are steady and roomy."""
        if self._closed:
            return
        memo = (id(ask.windows), id(ask.budgets))
        now = asyncio.get_running_loop().time()
        shape = self._shapes.get(memo)
        if shape is None:
            if len(self._shapes) >= SHAPES_MAX:
                self._forget(next(iter(self._shapes)))
            self._shapes[memo] = _Shape(seen=now)
            return
        steady = now - shape.seen < DENSE
        shape.seen = now
        if steady and shape.spare is None and roomy(ask, reply):
            self._ask_for(shape, ask)

    async def aclose(self) -> None:
        """Give every spare back, those whose reply is still on the way once it comes."""
        self._closed = True
        while self._asked:
            await asyncio.gather(*self._asked, return_exceptions=True)
        for memo in list(self._shapes):
            self._forget(memo)

    def _shape(self, ask: Ask) -> _Shape | None:
        memo = (id(ask.windows), id(ask.budgets))
        shape = self._shapes.get(memo)
        if shape is None and self._signed:
            return self._moved(ask, memo)
        return shape

    def _moved(self, ask: Ask, memo: Memo) -> _Shape | None:
        """The shape whose spare was asked for under the tuples that a snapshot reload replaced with `ask`'s,
        equal to them: moved under `ask`'s, so that the key's next call takes the spare. (A call that acquired
        beside it would read Redis's counts with the spare in them, one request short.) Its spare's ask keeps
        the old tuples alive, so their ids cannot be another key's meanwhile."""
        signature = _signature(ask)
        old = self._signed.get(signature)
        shape = self._shapes.get(old) if old is not None else None
        if old is None or shape is None or shape.spare is None or shape.spare.signature != signature:
            return None
        del self._shapes[old]
        self._shapes[memo] = shape
        self._signed[signature] = memo
        return shape

    def _forget(self, memo: Memo) -> None:
        shape = self._shapes.pop(memo)
        spare, shape.spare = shape.spare, None
        if spare is not None and spare.signature is not None and self._signed.get(spare.signature) == memo:
            del self._signed[spare.signature]
        if spare is not None and spare.verdict is not None:
            self._release(spare)

    def _ask_for(self, shape: _Shape, ask: Ask, signature: Signature | None = None) -> None:
        """Ask for a spare for `ask`'s key. `signature`: the one of the spare `ask` took, the same limits."""
        spare = _Spare(
            Ask(
                # Random rather than counted: a forked worker must not hold its parent's slots in flight.
                request_id=f"spare-{os.urandom(12).hex()}",
                windows=ask.windows,
                budgets=ask.budgets,
                tokens=_rounded_up(ask.tokens),
                cost=_rounded_up(ask.cost),
                shard=ask.shard,
            )
        )
        reply = self._send(spare.ask)
        if reply is None:
            return
        shape.spare = spare
        spare.coming = reply
        if signature is None:
            signature = _signature(ask)
            if len(self._signed) >= 2 * SHAPES_MAX:  # keys gone for good: their entries point at no shape
                self._signed = {kept: memo for kept, memo in self._signed.items() if memo in self._shapes}
            self._signed[signature] = (id(ask.windows), id(ask.budgets))
        spare.signature = signature
        self._asked.add(reply)
        reply.add_done_callback(functools.partial(self._arrived, shape, spare))

    def _arrived(self, shape: _Shape, spare: _Spare, reply: asyncio.Future[bytes]) -> None:
        self._asked.discard(reply)
        spare.coming = None
        if reply.cancelled() or reply.exception() is not None:
            # Nothing reserved, or (a lost connection) nothing known: left as a plain acquire's would be (above).
            if shape.spare is spare:
                shape.spare = None
            return
        try:
            values = list(map(int, reply.result().split()))
            verdict = verdict_from_reply(spare.ask, values, local=False)
        except ValueError:
            logger.error("The rate limiter's acquire script sent a reply it cannot read: %r", reply.result())
            verdict = None
        if verdict is None or verdict.ticket is None:  # refused (it reserved nothing), or unreadable
            if shape.spare is spare:
                shape.spare = None
            return
        self._hold(verdict.ticket)
        spare.verdict, spare.ticket, spare.reply = verdict, verdict.ticket, values
        if shape.spare is not spare or self._closed:  # its key was forgotten, or the limiter closed, meanwhile
            if shape.spare is spare:
                shape.spare = None
            self._release(spare)
            return
        spare.room = roomy(spare.ask, values)
        spare.timer = asyncio.get_running_loop().call_later(SPARE_IDLE, self._idle, shape, spare)

    def _idle(self, shape: _Shape, spare: _Spare) -> None:
        if shape.spare is spare:
            shape.spare = None
            self._release(spare)

    def _release(self, spare: _Spare) -> None:
        """Give the spare back, once: a second give-back would free what other calls hold."""
        if spare.timer is not None:
            spare.timer.cancel()
        ticket, spare.ticket = spare.ticket, None
        if ticket is not None:
            self.given_back += 1
            self._give_back(spare.ask, ticket)


def _signature(ask: Ask) -> Signature:
    return ask.windows, tuple((cap.scope, cap.period, cap.limit, cap.ttl) for cap in ask.budgets)


def roomy(ask: Ask, reply: Sequence[int]) -> bool:
    """Whether every limit in an admitting `reply` to `ask` keeps its headroom with a spare for a call like it."""
    if not reply[0]:
        return False
    tokens, cost = _rounded_up(ask.tokens), _rounded_up(ask.cost)  # what that spare would reserve
    at = 2
    for window in ask.windows:
        for limit, amount in ((window.rpm, 1), (window.tpm, tokens)):
            if limit is None:
                continue
            remaining = reply[at + 1]  # after this call's reservation
            at += 3
            if remaining - amount < _headroom(limit, amount):
                return False
        if window.concurrency is not None:
            free = window.concurrency - reply[at] - 1  # reply[at]: in flight before this call
            at += 1
            if free - 1 < _headroom(window.concurrency, 1):
                return False
    for budget in ask.budgets:
        left = budget.limit - reply[at] - ask.cost  # reply[at]: spent and reserved before this call
        at += 1
        if left - cost < _headroom(budget.limit, cost):
            return False
    return True


def rebased(reply: Sequence[int], ask: Ask, tokens: int) -> list[int]:
    """An admitting `reply` to `ask` as it would have read had the call reserved `tokens` rather than `ask.tokens`.

    Only the TPM buckets change: each holds the difference less, so it has that many more tokens left and is full
    again that much sooner. The reset is rounded up from the script's, itself rounded up, so it may say a
    millisecond more than it would have: never less.
    """
    values = list(reply)
    less = ask.tokens - tokens
    at = 2
    for window in ask.windows:
        if window.rpm is not None:
            at += 3
        if window.tpm is not None:
            if window.tpm > 0:
                values[at + 1] += less
                values[at + 2] = max(0, math.ceil(values[at + 2] - less * MINUTE_MS / window.tpm))
            at += 3
        if window.concurrency is not None:
            at += 1
    return values


def _headroom(limit: int, amount: int) -> float:
    return max(limit * HEADROOM_SHARE, HEADROOM_FLOOR * max(amount, 1))


def _rounded_up(amount: int) -> int:
    """A spare's tokens and cost: the next power of two, so that calls of similar size fit the same spare."""
    return 0 if amount <= 0 else 1 << (amount - 1).bit_length()
