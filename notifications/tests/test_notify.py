"""notify: one delivery per channel that receives the event, at most once per alert, queued once committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from notifications.models import AlertDelivery, AlertEvent
from notifications.services import notify
from notifications.tests.factories import make_email_channel, make_webhook_channel
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

SOFT, HARD, BREAKER = AlertEvent.BUDGET_SOFT, AlertEvent.BUDGET_HARD, AlertEvent.BREAKER_OPEN


def soft_alert(tenant_id: int | None, key: str = "budget:1:2026-11:soft") -> list[int]:
    return notify(
        event=SOFT, tenant_id=tenant_id, key=key, subject="80 % spent", text="Spent 8 of 10.", payload={"spent": "8"}
    )


def delivered_to() -> list[str]:
    return sorted(AlertDelivery.objects.values_list("channel__name", flat=True))


def test_it_reaches_the_tenants_own_channels_and_the_operators_that_receive_the_event(
    tenant: Tenant, outsider: IssuedKey
) -> None:
    make_email_channel(tenant=tenant, name="acme soft and hard")
    make_email_channel(tenant=tenant, name="acme hard only", events=[HARD])
    make_email_channel(tenant=tenant, name="acme switched off", active=False)
    make_webhook_channel(url="http://127.0.0.1:9/hook", name="operators")
    make_email_channel(tenant=outsider.api_key.tenant, name="globex")

    made = soft_alert(tenant.pk)

    assert delivered_to() == ["acme soft and hard", "operators"]
    assert sorted(made) == sorted(AlertDelivery.objects.values_list("pk", flat=True))
    delivery = AlertDelivery.objects.get(channel__name="operators")
    assert (delivery.event, delivery.subject, delivery.text, delivery.payload) == (
        SOFT,
        "80 % spent",
        "Spent 8 of 10.",
        {"spent": "8"},
    )
    assert (delivery.status, delivery.attempts) == (AlertDelivery.Status.PENDING, 0)


def test_the_same_alert_raised_again_makes_no_second_delivery(tenant: Tenant) -> None:
    make_email_channel(tenant=tenant)
    make_email_channel()

    first, again = soft_alert(tenant.pk), soft_alert(tenant.pk)

    assert len(first) == 2
    assert again == []
    assert AlertDelivery.objects.count() == 2
    soft_alert(tenant.pk, key="budget:1:2026-12:soft")  # another period: another alert
    assert AlertDelivery.objects.count() == 4


def test_an_operators_event_never_reaches_a_tenants_channel(tenant: Tenant) -> None:
    # Made past the channel rules, which refuse breaker alerts on a tenant's channel.
    make_email_channel(tenant=tenant, events=[BREAKER])
    make_email_channel(events=[BREAKER])

    notify(event=BREAKER, tenant_id=tenant.pk, key="breaker:7:1.5", subject="down", text="down", payload={})

    assert list(AlertDelivery.objects.values_list("channel__tenant", flat=True)) == [None]


def test_without_a_channel_for_the_event_nothing_is_made_or_queued(
    tenant: Tenant, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    make_email_channel(tenant=tenant, events=[HARD])

    with django_capture_on_commit_callbacks() as queued:
        assert soft_alert(tenant.pk) == []

    assert queued == []
    assert not AlertDelivery.objects.exists()


def test_new_deliveries_are_queued_once_the_transaction_commits(
    tenant: Tenant, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    make_email_channel(tenant=tenant)

    with django_capture_on_commit_callbacks() as queued:
        soft_alert(tenant.pk)
        soft_alert(tenant.pk)  # already there: nothing more to queue

    assert len(queued) == 1
