"""Running a queued job through the same pipeline as a live request, made with the key that sent it.

The job's request is rebuilt as the fast path would hand it to a view (its
body and routing headers as the client sent them), read by gateway.intake's
`json_call` and served by gateway.routing's `serve`, under the job's id as the
call's request id. A run:

    claim (committed: running, under a lease) -> serve, waiting in line until the job's deadline or the
    end of the run's slice -> record the answer (completed, failed or expired), under the claim
                                 └─ no room within the slice: released (queued again), handed back after a pause

Every call that reached the limits is one ledger row, with its queue time: an
answer, an error, or the expiry (429 `queue_expired`). A run handed back
writes none; only the last run of a job does.

Exactly once, and where it stops. A job is recorded only by the run holding its
claim, which the run renews every third of PORTICO_QUEUE_JOB_LEASE. Just before
its call goes upstream (admitted by its limits and a deployment's caps), the run
marks the job sent, committed (`sent_at`). A worker that dies (SIGKILL, a lost
machine) leaves its job `running`; once the lease has run out, the next run (a
hand-over when the client polls, see gateway.routers.queue; the periodic sweep,
gateway.tasks_queue; else the broker's redelivery, acks_late) drains the ledger
spool and looks for the job's ledger row and the mark:

    the dead run ...                            the next run
    died waiting for capacity (no mark)         serves the job again: nothing was sent
    was in its call (the mark, no ledger row)   fails the job, 502 queue_job_interrupted: the provider may or
                                                may not have seen it; writes its ledger row (no tokens)
    had its answer (a ledger row)               fails the job, 500 queue_job_interrupted: the answer is lost

So a job's request reaches a provider at most once per job, its call is in the
ledger once (the ledger is unique by request id), and it completes at most
once, as a batch's lines do (gateway.batch_runner). An ensemble's calls begin
as soon as its limits admit it, with no hook between the two: its run marks the
job before it waits, so one that dies waiting is failed too, never sent twice.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpResponse

from billing.metering import MeterAsk, MeterResult
from gateway.accounting import Call, accounts
from gateway.batch_runner import runtime
from gateway.errors import AuthenticationFailed, InternalError, PorticoError
from gateway.extensions import Extensions
from gateway.intake import json_call
from gateway.queueing.admission import Requeue
from gateway.queueing.wish import JobRun, QueueWish
from gateway.recovery import Continuation
from gateway.relay import Opened, Whole, answer, attempt
from gateway.routing import route, serve
from gateway.snapshot import Snapshot, store
from gateway.sse import EventStream
from gateway.validation import (
    validate_chat_request,
    validate_completion_request,
    validate_embedding_request,
    validate_image_request,
    validate_moderation_request,
)
from providers.adapters.base import Operation
from providers.facade import RouteInfo
from queueing.facade import JobInfo, Outcome
from queueing.selectors import usage_recorded
from queueing.services import (
    queued_job_claim,
    queued_job_finish,
    queued_job_mark_sent,
    queued_job_release,
    queued_job_renew,
)
from tenants.facade import KeyGrant

T = TypeVar("T")
VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "chat": validate_chat_request,
    "completions": validate_completion_request,
    "embeddings": validate_embedding_request,
    "moderations": validate_moderation_request,
    "images": validate_image_request,
}
INTERRUPTED = "queue_job_interrupted"


def run_seconds() -> float:
    """The most one run takes: its wait in line, then the call itself (at most PORTICO_MAX_REQUEST_TIMEOUT)."""
    return settings.PORTICO_QUEUE_JOB_SLICE + settings.PORTICO_MAX_REQUEST_TIMEOUT + 15


async def _db(work: Callable[..., T], **kwargs: Any) -> T:
    def closing() -> T:
        try:
            return work(**kwargs)
        finally:
            connections.close_all()

    return await sync_to_async(closing, thread_sensitive=False)()


async def run_job(job_id: str) -> float | None:
    """Run the job once; the seconds after which it should be handed to the workers again, or None when done."""
    claim = await _db(queued_job_claim, job_id=job_id, lease_seconds=settings.PORTICO_QUEUE_JOB_LEASE)
    if claim is None:
        return None  # finished, or held by a live run
    job = claim.job
    if claim.orphaned and (outcome := await _interrupted(job)) is not None:
        await _db(queued_job_finish, job_id=job.id, token=claim.token, outcome=outcome)
        return None
    keeper = asyncio.get_running_loop().create_task(_keep(job.id, claim.token))
    try:
        result = await _serve(job, claim.token)
    finally:
        keeper.cancel()
    if isinstance(result, float):
        await _db(queued_job_release, job_id=job.id, token=claim.token, pause=result)
        return result
    await _db(queued_job_finish, job_id=job.id, token=claim.token, outcome=result)
    return None


async def _interrupted(job: JobInfo) -> Outcome | None:
    """How a job whose run died holding it ends, if that run had sent it upstream; None: run it again."""
    if await _served_before(job):
        lost = InternalError("The request was served, but its worker stopped before storing the answer.")
        return Outcome("failed", lost.status, lost.to_json(), INTERRUPTED)
    if job.sent_at is None:
        return None  # it died waiting for capacity: nothing was sent
    error = PorticoError(
        "The worker running this request stopped in the middle of its call to the provider: the request may or "
        "may not have reached the provider. It was not sent again, so that it runs at most once.",
        status=502,
        type="server_error",
        code=INTERRUPTED,
    )
    queue_ms = max(0, int((job.sent_at - job.created_at) * 1000))
    await _interrupted_row(job, error, queue_ms)
    return Outcome("failed", error.status, error.to_json(), INTERRUPTED, queue_ms)


async def _interrupted_row(job: JobInfo, error: PorticoError, queue_ms: int) -> None:
    """The ledger row of a call that never finished: the job's id as its request id, its queue time, no tokens."""
    if job.api_key_id is None:
        return  # the key is gone with its ledger identity; nothing to bill it to
    assert job.sent_at is not None
    ask = MeterAsk(
        request_id=job.id,
        client_request_id=job.client_request_id,
        tenant_id=job.tenant_id,
        key_id=job.api_key_id,
        key_prefix=job.key_prefix,
        model=job.model,
        upstream_model="",
        provider="",
        operation=job.operation,
        body={},
        streamed=False,
        started_at=job.sent_at,
    )
    snapshot = await store.get()
    result = MeterResult(ask=ask, admission=None, status=error.status, error_type=INTERRUPTED, queue_ms=queue_ms)
    accounts.finish(result, snapshot.billing)


async def _keep(job_id: str, token: str) -> None:
    """Renew the run's claim while it runs; a claim lost (taken over) is left alone: the run cannot record."""
    lease = settings.PORTICO_QUEUE_JOB_LEASE
    while True:
        await asyncio.sleep(lease / 3)
        if not await _db(queued_job_renew, job_id=job_id, token=token, lease_seconds=lease):
            return


async def _served_before(job: JobInfo) -> bool:
    """Whether a run that died holding the job got as far as its ledger row (spooled rows drained first)."""
    writer = accounts.writer
    if writer is not None:
        await asyncio.to_thread(_flush, writer.flush)
    return await _db(usage_recorded, request_id=job.id)


def _flush(flush: Callable[[], object]) -> None:
    try:
        flush()
    finally:
        connections.close_all()


async def _serve(job: JobInfo, token: str) -> Outcome | float:
    """The job's answer, or the seconds after which to try again."""
    grant = await _grant(job)
    if grant is None:
        refused = AuthenticationFailed("The API key that sent this request is no longer valid.")
        return Outcome("failed", refused.status, refused.to_json(), refused.classification)
    now = time.time()
    run = JobRun(
        job.id, queued_at=job.created_at, deadline=job.deadline, slice_ends=now + settings.PORTICO_QUEUE_JOB_SLICE
    )
    call: Call | None = None
    try:
        operation = cast(Operation, job.operation)
        call, snapshot, ext = await json_call(_request(job, grant), operation, VALIDATORS[job.operation])
        call.queue = QueueWish(job=run)
        response = await _answer(call, snapshot, ext, _Sender(job.id, token))
    except Requeue as requeue:
        return requeue.pause
    except PorticoError as exc:
        status = "expired" if exc.code == "queue_expired" else "failed"
        return Outcome(status, exc.status, exc.to_json(), exc.classification, _queue_ms(call))
    if isinstance(response, EventStream):  # a job is never streamed (refused when it was sent); be safe
        await response.aclose()
        error = InternalError("The server had an error while processing your request.")
        return Outcome("failed", error.status, error.to_json(), error.classification, _queue_ms(call))
    status = "completed" if response.status_code < 400 else "failed"
    return Outcome(status, response.status_code, response.content, queue_ms=_queue_ms(call))


class _Sender:
    """A job's upstream attempts (gateway.relay.attempt), the first one marked sent before it goes."""

    __slots__ = ("job_id", "marked", "token")

    def __init__(self, job_id: str, token: str) -> None:
        self.job_id = job_id
        self.token = token
        self.marked = False

    async def mark(self) -> None:
        if self.marked:
            return
        if not await _db(queued_job_mark_sent, job_id=self.job_id, token=self.token):
            # Its lease ran out while it waited and another run holds it now: that run decides, not this one.
            raise PorticoError(
                "This request was taken over by another worker; it was not sent from here.",
                status=409,
                type="server_error",
                code="queue_job_taken_over",
            )
        self.marked = True

    async def __call__(
        self,
        call: Call,
        route: RouteInfo,
        *,
        first_byte: float | None = None,
        stall: float | None = None,
        continuation: Continuation | None = None,
    ) -> Whole | Opened:
        await self.mark()
        return await attempt(call, route, first_byte=first_byte, stall=stall, continuation=continuation)


async def _answer(call: Call, snapshot: Snapshot, ext: Extensions, sender: _Sender) -> HttpResponse | EventStream:
    """What gateway.routing's `serve` answers, the job marked sent just before its call goes upstream."""
    if call.model.ensemble:  # its calls begin as soon as its limits admit it: marked before it waits
        await sender.mark()
        return await serve(call, snapshot, ext)
    routed = await route(call, snapshot, ext, send=sender)
    if isinstance(routed.result, Whole):
        return answer(routed.session, routed.result, routed.headers)
    await routed.result.aclose()  # a stream, which a job never asks for: refused below
    routed.tried.drop()
    error = InternalError("The server had an error while processing your request.")
    routed.session.fail(error)
    raise error


def _queue_ms(call: Call | None) -> int | None:
    return call.queue_ms if call is not None else None


async def _grant(job: JobInfo) -> KeyGrant | None:
    """The key that sent the job, if it may still call; a key this process has not seen yet means a reload."""
    snapshot = await store.get()
    grant = _grant_in(snapshot, job)
    if grant is None:
        grant = _grant_in(await store.reload(), job)
    return grant


def _grant_in(snapshot: Snapshot, job: JobInfo) -> KeyGrant | None:
    grant = snapshot.keys.get(job.key_prefix)
    if grant is None or grant.key_id != job.api_key_id:
        return None
    if grant.expires_at is not None and grant.expires_at <= time.time():
        return None
    return grant


def _request(job: JobInfo, grant: KeyGrant) -> ASGIRequest:
    """The job as the fast path would hand it to a view (gateway.fastpath._request)."""
    scope = {"type": "http", "method": "POST", "path": job.path, "query_string": b"", "headers": []}
    request = ASGIRequest(scope, io.BytesIO(job.body.encode()))
    request.META["CONTENT_TYPE"] = "application/json"
    request.META.update(job.headers)
    request.auth = grant  # type: ignore[attr-defined]
    request.portico_request_id = job.id  # type: ignore[attr-defined]
    request.client_request_id = job.client_request_id  # type: ignore[attr-defined]
    return request


def run(job_id: str) -> float | None:
    """Run the job once, from a task's thread, on the process's serving loop; see `run_job`."""
    return runtime.run(lambda: run_job(job_id), timeout=run_seconds())
