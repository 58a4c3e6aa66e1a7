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
claim, which the run renews every third of PORTICO_QUEUE_JOB_LEASE. A worker
that dies (SIGKILL, a lost machine) leaves its job `running`; once the lease
has run out, the next run (a hand-over when the client polls, see
gateway.routers.queue; else the broker's redelivery, acks_late) drains the
ledger spool and looks for the job's ledger row:

    the dead run's call ...                     the next run
    never began, or was cut off before its      serves the job again: its provider may have seen the
    answer (no ledger row)                      first call too, which no ledger row records
    ended (a ledger row)                        fails the job, queue_job_interrupted: the answer is lost,
                                                and it is not sent again

So a job completes at most once, its call is in the ledger once (the ledger is
unique by request id), and its request reaches a provider at least once for
a run that dies mid-call; Portico prefers answering a job to losing it.
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

from gateway.accounting import Call, accounts
from gateway.batch_runner import runtime
from gateway.errors import AuthenticationFailed, InternalError, PorticoError
from gateway.intake import json_call
from gateway.queueing.admission import Requeue
from gateway.queueing.wish import JobRun, QueueWish
from gateway.routing import serve
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
from queueing.facade import JobInfo, Outcome
from queueing.selectors import usage_recorded
from queueing.services import queued_job_claim, queued_job_finish, queued_job_release, queued_job_renew
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
    if claim.orphaned and await _served_before(job):
        error = InternalError("The request was served, but its worker stopped before storing the answer.")
        outcome = Outcome("failed", error.status, error.to_json(), INTERRUPTED)
        await _db(queued_job_finish, job_id=job.id, token=claim.token, outcome=outcome)
        return None
    keeper = asyncio.get_running_loop().create_task(_keep(job.id, claim.token))
    try:
        result = await _serve(job)
    finally:
        keeper.cancel()
    if isinstance(result, float):
        await _db(queued_job_release, job_id=job.id, token=claim.token)
        return result
    await _db(queued_job_finish, job_id=job.id, token=claim.token, outcome=result)
    return None


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


async def _serve(job: JobInfo) -> Outcome | float:
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
        response = await serve(call, snapshot, ext)
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
