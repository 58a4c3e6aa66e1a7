"""GET /v1/queue/{id}: a request accepted as a job (202 Accepted), while it waits, then its answer.

    queued, running     202, the job object ({"object": "queue.job", "status": ...}), Retry-After: 1
    completed           the answer, with the status and body the client would have had (a chat.completion, ...)
    failed              the error, with its status (OpenAI's error shape)
    expired             429, code queue_expired: its deadline passed before capacity freed

Every answer says where the job stands in `x-portico-queue-status`, and once
it was admitted, how long it waited in `x-portico-queue-time` (ms). Jobs
belong to the tenant: another tenant's is a 404, as is an unknown id.
"""

from __future__ import annotations

import re
import time

import orjson
from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway import tasks_queue  # noqa: F401 - registers the job's task, for the in-process runner
from gateway.background import enqueue
from gateway.errors import UNREACHABLE, DatabaseUnavailable, NotFound
from gateway.intake import grant_of
from gateway.queueing.deferral import TASK, expired, location
from gateway.routers.openapi import documented
from queueing.facade import FINAL, JobInfo
from queueing.selectors import queued_job_get
from queueing.services import LOST_AFTER, STALE_AFTER, queued_job_requeue_stale

router = Router(tags=["queue"])

JOB_ID = re.compile(r"qjob_[0-9a-f]{24}")


@router.get("/queue/{job_id}", summary="Retrieve a queued request", openapi_extra=documented())
async def retrieve_queued(request: HttpRequest, job_id: str) -> HttpResponse:
    if not JOB_ID.fullmatch(job_id):  # not one Portico makes: no need to ask the database
        raise _not_found(job_id)
    try:
        job = await sync_to_async(_look, thread_sensitive=False)(grant_of(request).tenant_id, job_id)
    except UNREACHABLE:  # the client learns only that it may ask again
        raise DatabaseUnavailable() from None
    if job is None:
        raise _not_found(job_id)
    return job_response(job)


def _not_found(job_id: str) -> NotFound:
    shown = job_id if job_id.isascii() and job_id.isprintable() and len(job_id) <= 64 else "…"
    return NotFound(f"Job not found: no queued request with id '{shown}'.", param="job_id", code="job_not_found")


def _look(tenant_id: int, job_id: str) -> JobInfo | None:
    """The tenant's job; handed to the workers again on the way if its last hand-over looks lost."""
    try:
        job = queued_job_get(tenant_id=tenant_id, job_id=job_id)
        if job is not None and queued_job_requeue_stale(job=job, stale_after=STALE_AFTER, lost_after=LOST_AFTER):
            enqueue(TASK, job.id, queue="interactive")
        return job
    finally:
        connections.close_all()


def job_response(job: JobInfo) -> HttpResponse:
    status = job.status
    if status == "queued" and time.time() >= job.deadline:
        # Not taken before its deadline: expired, whenever a worker comes to record it so.
        return _expired(job)
    if status not in FINAL:
        response = HttpResponse(orjson.dumps(job.object()), status=202, content_type="application/json")
        response["Location"] = location(job.id)
        response["Retry-After"] = "1"
    else:
        response = HttpResponse(job.result_body, status=job.result_status or 500, content_type="application/json")
    response["x-portico-queue-status"] = status
    if job.queue_ms is not None:
        response["x-portico-queue-time"] = str(job.queue_ms)
    return response


def _expired(job: JobInfo) -> HttpResponse:
    error = expired(job.deadline - job.created_at)
    response = HttpResponse(error.to_json(), status=error.status, content_type="application/json")
    response["x-portico-queue-status"] = "expired"
    return response
