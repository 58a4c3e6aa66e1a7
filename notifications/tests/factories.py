from __future__ import annotations

from collections.abc import Sequence

from notifications.models import AlertChannel, AlertEvent
from notifications.services import alert_channel_set_secret
from tenants.models import Tenant

SECRET = "whsec-test-0123456789abcdef"
BUDGET_EVENTS = (AlertEvent.BUDGET_SOFT, AlertEvent.BUDGET_HARD)


def make_email_channel(
    *,
    tenant: Tenant | None = None,
    name: str = "",
    emails: Sequence[str] = ("ops@example.com",),
    events: Sequence[str] = BUDGET_EVENTS,
    active: bool = True,
) -> AlertChannel:
    return AlertChannel.objects.create(
        name=name or f"mail to {tenant or 'operators'}",
        tenant=tenant,
        kind=AlertChannel.Kind.EMAIL,
        emails=list(emails),
        events=list(events),
        active=active,
    )


def make_webhook_channel(
    *,
    url: str,
    tenant: Tenant | None = None,
    name: str = "",
    events: Sequence[str] = BUDGET_EVENTS,
    secret: str = SECRET,
) -> AlertChannel:
    channel = AlertChannel(
        name=name or f"hook of {tenant or 'operators'}",
        tenant=tenant,
        kind=AlertChannel.Kind.WEBHOOK,
        url=url,
        events=list(events),
    )
    alert_channel_set_secret(channel=channel, secret=secret)
    channel.save()
    return channel
