"""A request refused for capacity that asked to respond asynchronously: kept as a job, answered 202 Accepted.

    HTTP/1.1 202 Accepted
    Location: /v1/queue/qjob_…
    Preference-Applied: respond-async

    {"id": "qjob_…", "object": "queue.job", "status": "queued", "model": …, "created_at": …, "expires_at": …}

The job keeps the request as the client sent it (its body and its
x-portico-* headers) and is handed to the workers on the `interactive` queue;
a worker serves it through the same pipeline as a live request
(gateway.queueing.runner). One row and one hand-over: the only database
write a /v1/ request makes, and only when it is deferred.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections
from django.http import HttpResponse

from gateway.background import enqueue
from gateway.errors import RateLimited
from gateway.queueing.wish import QueueWish, kept_headers
from queueing.facade import JobInfo
from queueing.services import queued_job_create
from tenants.facade import QueuePolicy

if TYPE_CHECKING:
    from gateway.accounting import Call

logger = logging.getLogger(__name__)

TASK = "gateway.tasks_queue.queue_job_run"
T = TypeVar("T")


class Deferred(Exception):  # noqa: N818 - not an error: the request was accepted
    """The request was accepted as a job; gateway.api answers it with `response()`."""

    def __init__(self, job: JobInfo) -> None:
        super().__init__(job.id)
        self.job = job

    def response(self) -> HttpResponse:
        response = HttpResponse(orjson.dumps(self.job.object()), status=202, content_type="application/json")
        response["Location"] = location(self.job.id)
        response["Preference-Applied"] = "respond-async"
        response["Retry-After"] = "1"  # a polite first poll
        return response


def location(job_id: str) -> str:
    return f"/v1/queue/{job_id}"


def expired(waited: float, headers: dict[str, str] | None = None) -> RateLimited:
    """What a job gets when its deadline passed before it was admitted."""
    return RateLimited(
        "The queued request expired: its rate limits or its model's capacity did not admit it within "
        f"{waited:g} s. It was not run.",
        code="queue_expired",
        headers=headers,
    )


def wait_seconds(wish: QueueWish, policy: QueuePolicy) -> float:
    """How long the request may wait: what it asked (x-portico-queue-timeout), at most its policy's longest."""
    if wish.timeout is None:
        return policy.max_wait
    return min(wish.timeout, policy.max_wait)


async def defer(call: Call, wish: QueueWish, policy: QueuePolicy) -> Deferred | None:
    """Keep the call's request as a job and hand it to the workers; None if the tenant's queue is full (or the
    database cannot take it), and the request is then answered as it would have been."""
    request = wish.request
    if request is None:
        return None
    grant = call.grant
    try:
        job = await _in_thread(
            _accept,
            tenant_id=grant.tenant_id,
            api_key_id=grant.key_id,
            key_prefix=grant.prefix,
            operation=call.operation,
            path=request.path,
            model=call.model.public_id,
            body=request.body.decode("utf-8"),
            headers=kept_headers(request.META),
            client_request_id=call.client_request_id,
            wait_seconds=wait_seconds(wish, policy),
            max_depth=policy.max_depth,
        )
    except DatabaseError:
        logger.exception("a request asking to respond asynchronously could not be kept as a job")
        return None
    return Deferred(job) if job is not None else None


def _accept(**fields: Any) -> JobInfo | None:
    job = queued_job_create(**fields)
    if job is not None:
        enqueue(TASK, job.id, queue="interactive")
    return job


async def _in_thread(work: Callable[..., T], **kwargs: Any) -> T:
    def closing() -> T:
        try:
            return work(**kwargs)
        finally:
            connections.close_all()  # this thread serves no request: nothing else would hand its connection back

    return await sync_to_async(closing, thread_sensitive=False)()
