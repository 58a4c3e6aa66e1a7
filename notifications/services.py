"""Writes of the alerts app: raising an alert, sending deliveries again, and the channels' rules and secrets.

    notify(event="budget_soft", tenant_id=3, key="budget:12:2026-11:soft", subject=..., text=..., payload={...})

`notify` makes one delivery per channel that receives the event (the
tenant's own and the operators'), each at most once per key, and queues each
new one for `notifications.tasks.alert_delivery_send`. Inside a transaction the
jobs are queued once it commits, so an alert rolled back is never sent. The
caller never waits on a delivery: with a broker the job goes to `portico worker`,
without one to the server's own background threads (gateway/celery.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from kombu.exceptions import OperationalError as BrokerUnavailable

from notifications.models import AlertChannel, AlertDelivery, AlertEvent
from notifications.selectors import alert_channels_for
from notifications.tasks import alert_delivery_send
from providers.credentials import encrypt_credential

logger = logging.getLogger(__name__)

SECRET_MIN_LENGTH = 16
# Operators' channels only: a tenant's own channel never hears of the deployments behind its models.
OPERATOR_EVENTS = frozenset({AlertEvent.BREAKER_OPEN})


def notify(
    *, event: str, tenant_id: int | None, key: str, subject: str, text: str, payload: dict[str, Any]
) -> list[int]:
    """Deliver an alert to every active channel that receives `event`; returns the ids of the deliveries it made
    (none for a channel that already has this key's)."""
    channels = alert_channels_for(event=event, tenant_id=None if event in OPERATOR_EVENTS else tenant_id)
    made: list[int] = []
    with transaction.atomic():
        for channel in channels:
            delivery, created = AlertDelivery.objects.get_or_create(
                key=key,
                channel=channel,
                defaults={"event": event, "subject": subject[:300], "text": text, "payload": payload},
            )
            if created:
                made.append(delivery.pk)
    if made:
        # Robust: a job that cannot be queued is logged, and never fails the caller (the ledger writer, the breakers).
        transaction.on_commit(functools.partial(_queue, made), robust=True)
    return made


def alert_deliveries_resend(*, deliveries: QuerySet[AlertDelivery]) -> int:
    """Send failed deliveries again, each with a fresh set of tries; returns how many were queued."""
    ids = list(deliveries.filter(status=AlertDelivery.Status.FAILED).values_list("pk", flat=True))
    if ids:
        AlertDelivery.objects.filter(pk__in=ids, status=AlertDelivery.Status.FAILED).update(
            status=AlertDelivery.Status.PENDING, attempts=0
        )
        transaction.on_commit(functools.partial(_queue, ids), robust=True)
    return len(ids)


def _queue(delivery_ids: Iterable[int]) -> None:
    for delivery_id in delivery_ids:
        try:
            alert_delivery_send.delay(delivery_id)
        except BrokerUnavailable as exc:
            # Marked failed rather than left pending: "Send again" in the admin picks failed deliveries up.
            AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
                status=AlertDelivery.Status.FAILED, last_error=f"could not be queued: the broker did not answer ({exc})"
            )
            logger.error("alert delivery %s could not be queued: the broker did not answer (%s)", delivery_id, exc)


# --- channels -------------------------------------------------------------------------------------------------


def alert_channel_problems(
    *, kind: str, emails: list[str], url: str, events: list[str], tenant_id: int | None, has_secret: bool
) -> dict[str, str]:
    """What is wrong with a channel's settings, by field; empty when nothing is. The admin and the API both ask."""
    problems: dict[str, str] = {}
    if kind == AlertChannel.Kind.EMAIL:
        if not emails:
            problems["emails"] = "An email channel needs at least one address."
        for address in emails:
            try:
                validate_email(address)
            except ValidationError:
                problems["emails"] = f"Not an email address: {address!r}."
        if url:
            problems["url"] = "An email channel has no URL."
    elif kind == AlertChannel.Kind.WEBHOOK:
        if not url:
            problems["url"] = "A webhook channel needs a URL."
        if not has_secret:
            problems["secret"] = f"A webhook channel needs a signing secret of at least {SECRET_MIN_LENGTH} characters."
        if emails:
            problems["emails"] = "A webhook channel has no addresses."
    unknown = sorted(set(events) - set(AlertEvent.values))
    if not events or unknown:
        problems["events"] = f"Unknown events: {', '.join(unknown)}." if unknown else "Choose at least one event."
    elif tenant_id is not None and OPERATOR_EVENTS & set(events):
        problems["events"] = "Breaker alerts go to operators' channels only (a channel with no tenant)."
    return problems


def alert_channel_save(*, channel: AlertChannel, secret: str = "") -> AlertChannel:
    """Save a channel whose settings alert_channel_problems found nothing wrong with; a new secret replaces the
    stored one, none keeps it."""
    if secret:
        alert_channel_set_secret(channel=channel, secret=secret)
    channel.save()
    return channel


def alert_channel_set_secret(*, channel: AlertChannel, secret: str) -> None:
    """Encrypt a webhook's new signing secret onto an unsaved change."""
    if len(secret) < SECRET_MIN_LENGTH:
        raise ValueError(f"a signing secret has at least {SECRET_MIN_LENGTH} characters")
    channel.secret_encrypted = encrypt_credential(secret)
