"""Sending one delivery: by email through Django's mail backend, or as a signed JSON POST to a webhook.

Both raise DeliveryFailed with a short reason an operator can act on; the
reason is kept on the delivery. A webhook's answer body is never kept: it is
whatever the endpoint says, and the endpoint may be one a tenant chose.

The webhook's body is Slack-compatible (Slack, Mattermost and Teams' incoming
webhooks read `text`); `portico` holds the same alert for programs:

    {"text": "<subject>\\n<text>",
     "portico": {"delivery": 42, "event": "budget_soft", "key": "budget:12:2026-11:soft",
                 "subject": "...", "text": "...", "created_at": "2026-11-15T12:00:00+00:00", "data": {...}}}
"""

from __future__ import annotations

import smtplib
import time

import httpx
import orjson
from django.conf import settings
from django.core.mail import send_mail

from notifications.models import AlertChannel, AlertDelivery
from notifications.signing import HEADER, signature
from providers.credentials import CredentialUnreadable, decrypt_credential
from providers.http import post_body


class DeliveryFailed(Exception):
    """This try did not deliver; the message says why."""


def send(delivery: AlertDelivery) -> None:
    if delivery.channel.kind == AlertChannel.Kind.EMAIL:
        send_email(delivery)
    else:
        send_webhook(delivery)


def send_email(delivery: AlertDelivery) -> None:
    try:
        send_mail(
            subject=delivery.subject,
            message=delivery.text,
            from_email=None,  # DEFAULT_FROM_EMAIL, i.e. PORTICO_EMAIL_FROM
            recipient_list=list(delivery.channel.emails),
        )
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"email: {exc.__class__.__name__}: {exc}"[:500]) from exc


def webhook_body(delivery: AlertDelivery) -> bytes:
    return orjson.dumps(
        {
            "text": f"{delivery.subject}\n{delivery.text}",
            "portico": {
                "delivery": delivery.pk,
                "event": delivery.event,
                "key": delivery.key,
                "subject": delivery.subject,
                "text": delivery.text,
                "created_at": delivery.created_at.isoformat(),
                "data": delivery.payload,
            },
        }
    )


def send_webhook(delivery: AlertDelivery) -> None:
    channel = delivery.channel
    try:
        secret = decrypt_credential(channel.secret_encrypted)
    except CredentialUnreadable as exc:
        raise DeliveryFailed(f"the signing secret cannot be decrypted with this PORTICO_CREDENTIAL_KEY: {exc}") from exc
    if not secret:
        raise DeliveryFailed("the webhook has no signing secret: set one on its channel")
    body = webhook_body(delivery)
    headers = {
        "content-type": "application/json",
        "user-agent": "Portico-Alerts",
        "x-portico-event": delivery.event,
        "x-portico-delivery": str(delivery.pk),
        HEADER: signature(secret=secret, timestamp=int(time.time()), body=body),
    }
    timeout = settings.PORTICO_ALERT_WEBHOOK_TIMEOUT
    try:
        status = post_body(channel.url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise DeliveryFailed(f"webhook: no answer within {timeout:g} s") from exc
    except httpx.TransportError as exc:
        raise DeliveryFailed(f"webhook: could not reach it ({exc.__class__.__name__})") from exc
    if not 200 <= status < 300:
        raise DeliveryFailed(f"webhook: HTTP {status}")
