"""Budget alerts reach the alert channels: one delivery per channel and level and period, however often the check
runs, to the tenant's own channels and the operators', never to another tenant's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.alerts import budget_alerts_check
from billing.models import BudgetAlert
from billing.services import budget_set
from billing.tests.factories import make_usage
from notifications.models import AlertDelivery
from notifications.tests.factories import make_email_channel, make_webhook_channel
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def check(tenant: Tenant) -> None:
    budget_alerts_check(tenant_ids={tenant.pk}, key_ids=set(), now=NOW)


def deliveries() -> list[tuple[str, str, str]]:
    return sorted(AlertDelivery.objects.values_list("channel__name", "event", "key"))


def test_soft_then_hard_make_one_delivery_per_channel_and_level_even_when_checked_twice(
    tenant: Tenant, owner: IssuedKey, outsider: IssuedKey
) -> None:
    make_email_channel(tenant=tenant, name="acme")
    make_webhook_channel(url="http://127.0.0.1:9/hook", name="operators")
    make_email_channel(tenant=outsider.api_key.tenant, name="globex")
    budget = budget_set(tenant=tenant, amount=Decimal("10"), soft_limit_percent=80)
    soft, hard = f"budget:{budget.pk}:2026-11:soft", f"budget:{budget.pk}:2026-11:hard"

    make_usage(api_key=owner.api_key, created_at=NOW, cost="8.5")
    check(tenant)
    check(tenant)
    assert deliveries() == [("acme", "budget_soft", soft), ("operators", "budget_soft", soft)]

    make_usage(api_key=owner.api_key, created_at=NOW, cost="2")
    check(tenant)
    check(tenant)
    assert deliveries() == [
        ("acme", "budget_hard", hard),
        ("acme", "budget_soft", soft),
        ("operators", "budget_hard", hard),
        ("operators", "budget_soft", soft),
    ]


def test_a_check_queues_only_the_alerts_it_recorded(
    tenant: Tenant, owner: IssuedKey, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    make_email_channel(tenant=tenant)
    budget_set(tenant=tenant, amount=Decimal("10"))
    make_usage(api_key=owner.api_key, created_at=NOW, cost="9")

    with django_capture_on_commit_callbacks() as first:
        check(tenant)
    with django_capture_on_commit_callbacks() as second:
        check(tenant)

    assert len(first) == 1
    assert second == []


def test_an_alert_recorded_by_another_process_is_not_sent_again(tenant: Tenant, owner: IssuedKey) -> None:
    make_email_channel(tenant=tenant)
    budget = budget_set(tenant=tenant, amount=Decimal("10"))
    BudgetAlert.objects.create(budget=budget, period="2026-11", level="soft", spent=Decimal("8"), created_at=NOW)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="9")

    check(tenant)

    assert not AlertDelivery.objects.exists()


def test_the_message_names_the_owner_the_spend_and_what_happens_next(tenant: Tenant, owner: IssuedKey) -> None:
    make_email_channel(tenant=tenant)
    budget = budget_set(api_key=owner.api_key, amount=Decimal("10"), soft_limit_percent=80)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="10.25")

    budget_alerts_check(tenant_ids=set(), key_ids={owner.api_key.pk}, now=NOW)

    hard = AlertDelivery.objects.get(event="budget_hard")
    prefix = owner.api_key.prefix
    assert hard.subject == f"Portico: key owner ({prefix}) of Acme has reached its monthly budget of $10.00"
    assert hard.text.startswith("Spent $10.25 of $10.00 in period 2026-11. Its requests are refused")
    assert hard.payload == {
        "level": "hard",
        "period": "2026-11",
        "spent": "10.25",
        "budget": {"id": budget.pk, "amount": "10", "period": "monthly", "soft_limit_percent": 80},
        "tenant": {"id": tenant.pk, "slug": "acme", "name": "Acme"},
        "api_key": {"id": owner.api_key.pk, "name": "owner", "prefix": prefix},
    }
    soft = AlertDelivery.objects.get(event="budget_soft")
    assert soft.subject == f"Portico: key owner ({prefix}) of Acme has spent 80 % of its monthly budget"
