"""Admission for a call whose key has a queue policy (and for a queued job's run): wait in turn, defer, or refuse.

gateway.accounting.CallSession.admit sends such calls here (`may_queue`); every
other call is admitted as before, with no cost added. Two stages, each only when
needed:

    the limits       try once (or, if this process's line for the key and model has
                     waiters, join them instead of going first); refused for requests,
                     tokens or concurrency (never for a budget, or a limiter that failed):
                       asked to respond asynchronously, policy async or both   -> 202 with a job
                       policy wait or both, the line not full                  -> wait in line until the deadline
                       still refused at the deadline                           -> the refusal it would have had
    the deployments  the routing loop found only deployments at their caps (requests or
                     tokens per minute, requests in flight: shared by every process): the
                     same choices, in the model's line (`wait_for_deployments`, called by
                     gateway.routing_caps.run_in_turn); still full -> the 503 it would have had

The deadline is the key's longest wait, or less if the request asks
(x-portico-queue-timeout), for both stages together; a queued job's run waits
until the job's deadline or the end of its slice, whichever comes first, then
hands the job back (`Requeue`) or expires it. A call that waited says so:
`x-portico-queue-time` (ms), and its ledger row's `queue_ms`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from billing.metering import Admission
from gateway.errors import PorticoError, RateLimited
from gateway.queueing.deferral import defer, expired, wait_seconds
from gateway.queueing.lines import POLL, Attempt, lines, take_turn
from gateway.queueing.wish import QueueWish

if TYPE_CHECKING:
    from gateway.accounting import Call

# What waiting can cure: not a spent budget, nor a limiter that cannot be reached or failed.
WAITABLE = frozenset({"requests", "tokens", "concurrency"})
NO_WISH = QueueWish()
QUEUE_TIME_HEADER = "x-portico-queue-time"


class Session(Protocol):
    """What admission needs of a call's session (gateway.accounting.CallSession)."""

    call: Call

    async def attempt(self) -> Admission:
        """One try at the call's limits; an admitted one is the call's to settle."""
        ...

    def refusal(self, admission: Admission) -> PorticoError: ...

    def give_back(self, admission: Admission) -> None:
        """Give back what an admission reserved, recording nothing: the call no longer holds it."""
        ...

    def forgo(self) -> None:
        """Give back what the call holds; it ends without a ledger row (a job's is written when it runs)."""
        ...


class Requeue(Exception):  # noqa: N818 - not an error: the job is tried again later
    """A queued job's run found no room within its slice: the job goes back to the workers after `pause` s."""

    def __init__(self, pause: float) -> None:
        super().__init__(pause)
        self.pause = pause


class _NoUseWaiting(Exception):  # noqa: N818 - a signal out of the line, caught below
    pass


class _Stay:
    """One call's stay: its wish, its policy, its deadline (loop time), and whether it may wait."""

    __slots__ = ("deadline", "policy", "waits", "wish")

    def __init__(self, call: Call) -> None:
        self.wish = call.queue or NO_WISH
        self.policy = call.grant.queue
        job = self.wish.job
        if job is not None:
            self.waits = True
            ends = min(job.deadline, job.slice_ends)
            self.deadline = asyncio.get_running_loop().time() + (ends - time.time())
            return
        # In line, a client holds its connection: no longer than any request may last, both stages together.
        seconds = min(wait_seconds(self.wish, self.policy), settings.PORTICO_MAX_REQUEST_TIMEOUT)
        if call.queued_at is not None:
            seconds -= time.monotonic() - call.queued_at  # waited for its limits already
        self.waits = self.policy.waits and seconds > 0 and lines.depth(call.grant.tenant_id) < self.policy.max_depth
        self.deadline = asyncio.get_running_loop().time() + seconds

    @property
    def defers(self) -> bool:
        return self.wish.asynchronous and self.policy.defers and self.wish.job is None


def may_queue(call: Call) -> bool:
    """Whether the call, refused for capacity, may wait or become a job: what CallSession.admit sends here."""
    return call.queue is not None or (call.batch_id is None and call.grant.queue.mode != "off")


async def admit(session: Session) -> Mapping[str, str]:
    """The call's rate-limit headers once admitted (and its queue time, if it waited); else the error it gets."""
    call = session.call
    stay = _Stay(call)
    job = stay.wish.job
    if job is not None:
        call.queued_at = time.monotonic() - max(0.0, time.time() - job.queued_at)
        if time.time() >= job.deadline:
            raise _expired(call, {})
    admission = await _limits(session, stay)
    if call.queued_at is None:
        return admission.headers
    return {**admission.headers, **_queue_time(call)}


async def wait_for_deployments(
    session: Session, *, reserve: Attempt, refusal: Callable[[], PorticoError]
) -> Mapping[str, str]:
    """Wait in the model's line until `reserve` takes a slot on one of its deployments, all found at their caps;
    the call's queue time then. Else the call becomes a job (202), or gets `refusal()` (the 503 it would have had),
    or, a job's run, is handed back or expires."""
    call = session.call
    stay = _Stay(call)
    if stay.defers and (deferred := await defer(call, stay.wish, stay.policy)) is not None:
        session.forgo()
        raise deferred
    if not stay.waits:
        raise refusal()
    _waiting(call)
    call.queue_ms = None  # its ledger row counts the whole wait, should the call end here
    pause: float | None = POLL

    async def attempt() -> float | None:
        nonlocal pause
        pause = await reserve()
        return pause

    # Shared by every process (in Redis) as the caps are: a slot freed in one goes to the head, wherever it waits.
    line = lines.line(f"deployments:{call.model.public_id}", shared=True)
    job = stay.wish.job is not None
    if not await take_turn(line, flow=call.grant.tenant_id, deadline=stay.deadline, attempt=attempt, job=job):
        await attempt()  # the deadline: one last try, out of turn
    if pause is None:
        return _queue_time(call)
    if stay.wish.job is None:
        raise refusal()
    over = _job_over(call, stay, refusal().headers, retry_after=pause)
    if isinstance(over, Requeue):
        session.forgo()
    raise over


async def _limits(session: Session, stay: _Stay) -> Admission:
    call = session.call
    name = f"limits:{call.grant.key_id}:{call.model.public_id}"
    admission: Admission | None = None
    if not (stay.waits and lines.crowded(name)):
        admission = await _attempt(session)
        if admission.refused is None:
            return admission
        if admission.refused not in WAITABLE:
            raise session.refusal(admission)
    if stay.defers and (deferred := await defer(call, stay.wish, stay.policy)) is not None:
        session.forgo()
        raise deferred
    if not stay.waits:
        assert admission is not None  # only a call that may wait joins a line without trying first
        raise session.refusal(admission)
    _waiting(call)

    async def attempt() -> float | None:
        nonlocal admission
        admission = await _attempt(session)
        if admission.refused is None:
            return None
        if admission.refused not in WAITABLE:
            raise _NoUseWaiting  # a budget spent meanwhile, or the limiter in trouble
        return POLL if admission.refused == "concurrency" else admission.retry_after

    line = lines.line(name, shared=True)
    try:
        job = stay.wish.job is not None
        if not await take_turn(line, flow=call.grant.tenant_id, deadline=stay.deadline, attempt=attempt, job=job):
            await attempt()  # the deadline: one last try, out of turn, whose refusal is the answer
    except _NoUseWaiting:
        pass
    assert admission is not None
    if admission.refused is not None:
        raise _gave_up(session, stay, admission)
    return admission


def _waiting(call: Call) -> None:
    if call.queued_at is None:
        call.queued_at = time.monotonic()


def _queue_time(call: Call) -> dict[str, str]:
    assert call.queued_at is not None
    call.queue_ms = int((time.monotonic() - call.queued_at) * 1000)
    return {QUEUE_TIME_HEADER: str(call.queue_ms)}


def _gave_up(session: Session, stay: _Stay, refused: Admission) -> PorticoError | Requeue:
    error = session.refusal(refused)
    if stay.wish.job is None or refused.refused not in WAITABLE:
        return error
    return _job_over(session.call, stay, error.headers, retry_after=refused.retry_after)


def _job_over(call: Call, stay: _Stay, headers: Mapping[str, str], retry_after: float = POLL) -> PorticoError | Requeue:
    """A job's run that found no room: it expires at its deadline, else it goes back to the workers."""
    job = stay.wish.job
    assert job is not None
    if time.time() >= job.deadline - POLL:
        return _expired(call, headers)
    return Requeue(min(max(retry_after, POLL), max(POLL, job.deadline - time.time())))


def _expired(call: Call, headers: Mapping[str, str]) -> RateLimited:
    job = call.queue.job if call.queue is not None else None
    return expired(job.deadline - job.queued_at if job is not None else 0.0, dict(headers))


async def _attempt(session: Session) -> Admission:
    """One try at the limits that a client gone mid-try cannot leave holding anything.

    Cancelled mid-try, the try itself still runs to its end (the limiter may have reserved already): what it
    reserved goes back at once, and the call, which ends here, holds nothing.
    """
    task = asyncio.ensure_future(session.attempt())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is None and task.result().refused is None:
            session.give_back(task.result())
        raise
