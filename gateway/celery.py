"""The Celery application, and where a job goes when there is no broker.

With a broker (PORTICO_CELERY_BROKER_URL, else REDIS_URL) jobs travel to
`portico worker`, and `portico beat` keeps the schedule. Without one (the
embedded default) `send_task` hands the job to this process's own runner
(gateway.background) instead of the placeholder memory:// broker, so
`task.delay()`, `task.apply_async()` and `app.send_task()` do the same as
`gateway.background.enqueue` in both modes: the apps below the gateway, which
may not import it, use those. See docs/background-jobs.md.

With a Redis broker, a job a worker took is handed out again once the
visibility timeout has passed, finished or not: every task's hard time limit
should stay under it. The settings refuse a default limit that does not; a
worker checks each task's own limit as it starts (`tasks_outliving`) and names
those that do not, in an error it logs. It starts all the same: the tasks with
limits of their own (a queued job's run, a batch chunk) hold a lease on their
work, so a second delivery finds it held and runs nothing twice; it only wastes
a worker's time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from celery import Celery, Task, bootsteps
from celery.result import AsyncResult
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

logger = logging.getLogger(__name__)

# The queues, in the order a worker takes from them: a waiting `interactive` job goes before any `default` one,
# a `batch` job only when the others are empty.
QUEUES = ("interactive", "default", "batch")


class PorticoCelery(Celery):
    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        if broker_configured():
            return super().send_task(name, args, kwargs, **options)
        from gateway.background import Job, runner  # the runner imports this module

        job = Job(
            name=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            queue=options.get("queue") or queue_for(name),
            countdown=_countdown(options),
        )
        if options.get("task_id"):
            job.id = options["task_id"]
        runner.submit(job)
        return self.AsyncResult(job.id)


def _countdown(options: dict[str, Any]) -> float | None:
    eta = options.get("eta")
    if isinstance(eta, datetime):
        return max(0.0, (eta - datetime.now(eta.tzinfo)).total_seconds())
    countdown = options.get("countdown")
    return float(countdown) if countdown is not None else None


def broker_configured() -> bool:
    """True when jobs go to a broker, False in the embedded default (they run in this process)."""
    return bool(settings.PORTICO_CELERY_BROKER_URL)


def queue_for(name: str) -> str:
    """The queue of a task whose caller names none: its route in CELERY_TASK_ROUTES, else the default queue."""
    for pattern, route in settings.CELERY_TASK_ROUTES.items():
        if fnmatchcase(name, pattern):
            return str(route["queue"])
    return str(settings.CELERY_TASK_DEFAULT_QUEUE)


def tasks_outliving(tasks: Iterable[Task], *, visibility_timeout: float) -> list[str]:
    """Each task whose hard time limit is not under `visibility_timeout`, with its limit, by name."""
    return sorted(
        f"{task.name} ({task.time_limit:g} s)"
        for task in tasks
        if task.time_limit is not None and task.time_limit >= visibility_timeout
    )


class TimeLimitsCheck(bootsteps.Step):
    """A worker's first step: on a Redis broker, it names the tasks that may outlive the visibility timeout."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
        if not isinstance(visibility, int | float):  # only a Redis broker has one
            return
        if over := tasks_outliving(parent.app.tasks.values(), visibility_timeout=visibility):
            logger.error(
                "PORTICO_CELERY_VISIBILITY_TIMEOUT (%g s) should exceed every task's time limit: %s may still run "
                "when the broker hands its job to a second worker (docs/background-jobs.md)",
                visibility,
                ", ".join(over),
            )


app = PorticoCelery("portico")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(TimeLimitsCheck)
