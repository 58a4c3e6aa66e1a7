"""One try at one delivery: claim it, send it, record how it went.

The claim is one UPDATE ... WHERE status = 'pending': of two workers handed
the same job (a redelivery after a worker died, a second enqueue), one
claims the row and the other finds nothing to do, so nothing is sent twice.
"""

from __future__ import annotations

import enum
import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from notifications.models import AlertDelivery
from notifications.senders import DeliveryFailed, send

logger = logging.getLogger(__name__)

Status = AlertDelivery.Status


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed, back to pending: the caller tries again later
    FAILED = "failed"  # failed for the last time
    SKIPPED = "skipped"  # not pending: sent, being sent, failed, or gone


def alert_delivery_attempt(*, delivery_id: int) -> Outcome:
    """Send the delivery if it is pending; on failure put it back to pending, or mark it failed once it has had
    PORTICO_ALERT_ATTEMPTS tries."""
    claimed = AlertDelivery.objects.filter(pk=delivery_id, status=Status.PENDING).update(
        status=Status.SENDING, attempts=F("attempts") + 1
    )
    if not claimed:
        return Outcome.SKIPPED
    delivery = AlertDelivery.objects.select_related("channel").get(pk=delivery_id)
    mine = AlertDelivery.objects.filter(pk=delivery_id, status=Status.SENDING)
    last = delivery.attempts >= settings.PORTICO_ALERT_ATTEMPTS
    if not delivery.channel.active:  # trying again would not help
        mine.update(status=Status.FAILED, last_error="the channel was deactivated")
        return Outcome.FAILED
    try:
        send(delivery)
    except DeliveryFailed as exc:
        mine.update(status=Status.FAILED if last else Status.PENDING, last_error=str(exc))
        logger.warning("alert delivery %s, try %d: %s", delivery_id, delivery.attempts, exc)
        return Outcome.FAILED if last else Outcome.RETRY
    mine.update(status=Status.SENT, sent_at=timezone.now(), last_error="")
    return Outcome.SENT
