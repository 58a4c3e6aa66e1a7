"""The alerts app's task: deliver one alert to one channel, with retries (thin: notifications.delivery does the work).

A try that fails puts the delivery back to pending, and the task tries again
after an exponential backoff: PORTICO_ALERT_RETRY_BACKOFF seconds, then twice
that, and so on up to BACKOFF_MAX, each drawn between half and all of it so
that alerts to one endpoint that recovers do not all come back at once. The
delivery's own count of tries stops it at PORTICO_ALERT_ATTEMPTS, marked failed.

A database that does not answer is retried as gateway.tasks_base's policy
does, spelled out here as notifications may not import the gateway. Without a
broker the task runs on the server's own background threads, which wait out
the same backoff (gateway.background).
"""

from __future__ import annotations

import random

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from notifications.delivery import Outcome, alert_delivery_attempt

BACKOFF_MAX = 300.0  # seconds; well under PORTICO_CELERY_VISIBILITY_TIMEOUT, as a worker holds a job it will retry
_DATABASE_RETRIES = 5


def backoff(retries: int) -> float:
    """Seconds before the try after `retries` retries."""
    ceiling = min(BACKOFF_MAX, settings.PORTICO_ALERT_RETRY_BACKOFF * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


@shared_task(
    name="notifications.tasks.alert_delivery_send",
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=_DATABASE_RETRIES,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
)
def alert_delivery_send(self: Task, delivery_id: int) -> str:
    outcome = alert_delivery_attempt(delivery_id=delivery_id)
    if outcome is Outcome.RETRY:
        # The delivery counts its own tries; Celery's count only has to stay out of the way.
        limit = settings.PORTICO_ALERT_ATTEMPTS + _DATABASE_RETRIES
        raise self.retry(countdown=backoff(self.request.retries), max_retries=limit)
    return outcome.value
