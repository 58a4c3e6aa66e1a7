"""The Celery application, and where a job goes when there is no broker.

With a broker (PORTICO_CELERY_BROKER_URL, else REDIS_URL) jobs travel to
`portico worker`, and `portico beat` keeps the schedule. Without one (the
embedded default) `send_task` hands the job to this process's own runner
(gateway.background) instead of the placeholder memory:// broker, so
`task.delay()`, `task.apply_async()` and `app.send_task()` do the same as
`gateway.background.enqueue` in both modes: the apps below the gateway, which
may not import it, use those. See docs/background-jobs.md.
"""

from __future__ import annotations

import os
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

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


app = PorticoCelery("portico")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
