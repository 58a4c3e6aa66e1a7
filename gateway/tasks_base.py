"""The retry policy Portico's tasks share, explicit: a base class, a decorator, and the options themselves.

A task is thin: it takes ids, calls a service, and leaves failures that may
pass (a database, Redis or upstream that did not answer) to this policy:
up to MAX_RETRIES retries with exponential backoff and full jitter, the first
within BACKOFF seconds, then within twice that, and so on up to BACKOFF_MAX.
Any other exception is a bug or a refusal: logged, not retried.

    @portico_task()                                   # PorticoTask: this policy
    def batches_start(batch_id: str) -> None: ...

    @portico_task(**retry_policy(on=(UpstreamTimeout,), max_retries=10))
    def batches_run_chunk(batch_id: str) -> None: ...

A periodic job usually wants no retry (its next run is never far): a plain
`@shared_task`. The apps below the gateway, which may not import it, spell
the same options out (Celery's autoretry_for, retry_backoff, ...).

The policy applies without a broker too: gateway.background runs the task
in-process and waits out the backoff itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx
from celery import Task, shared_task
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Failures that say nothing about the job itself: trying again later may succeed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
    httpx.TransportError,
)
MAX_RETRIES = 5
BACKOFF = 2  # seconds; Celery doubles it per retry and draws the wait between 0 and that (full jitter)
# Well under PORTICO_CELERY_VISIBILITY_TIMEOUT: a worker holds a job it is waiting to retry unacknowledged.
BACKOFF_MAX = 300


def retry_policy(
    *,
    on: Iterable[type[BaseException]] = TRANSIENT_ERRORS,
    max_retries: int = MAX_RETRIES,
    backoff: int = BACKOFF,
    backoff_max: int = BACKOFF_MAX,
) -> dict[str, Any]:
    """Task options for a retry policy of a task's own, e.g. `@shared_task(**retry_policy(max_retries=10))`."""
    return {
        "autoretry_for": tuple(on),
        "max_retries": max_retries,
        "retry_backoff": backoff,
        "retry_backoff_max": backoff_max,
        "retry_jitter": True,
    }


class PorticoTask(Task):
    autoretry_for = TRANSIENT_ERRORS
    max_retries = MAX_RETRIES
    retry_backoff = BACKOFF
    retry_backoff_max = BACKOFF_MAX
    retry_jitter = True


def portico_task(**options: Any) -> Callable[[Callable[..., Any]], PorticoTask]:
    """`@portico_task()`: a shared task on PorticoTask with its policy; `options` go to Celery and override it."""
    decorate: Callable[[Callable[..., Any]], PorticoTask] = shared_task(base=PorticoTask, **options)
    return decorate
