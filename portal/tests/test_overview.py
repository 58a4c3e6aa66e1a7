"""The overview: month-to-date spend, budgets with what is left of them, and rate limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from billing.models import Budget, RateLimit
from billing.tests.factories import make_usage
from portal.selectors import tenant_overview
from portal.tests.conftest import SignedIn, Tenancy
from tenants.models import TenantRole


def _last_month() -> datetime:
    return timezone.now().replace(day=1) - timedelta(days=1)


def test_spend_counts_the_tenant_s_rows_of_this_month_only(acme: Tenancy, globex: Tenancy) -> None:
    make_usage(api_key=acme.key, cost="2.5")
    make_usage(api_key=acme.key, cost="40", created_at=_last_month())
    make_usage(api_key=globex.key, cost="7")

    month = tenant_overview(tenant=acme.tenant, now=timezone.now()).month

    assert month.sums.cost == Decimal("2.501")  # acme's fixture row costs 0.001
    assert month.sums.requests == 2


def test_budgets_show_their_spend_what_remains_and_how_full_they_are(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    Budget.objects.create(tenant=acme.tenant, amount=Decimal(10), period=Budget.Period.MONTHLY)
    Budget.objects.create(api_key=acme.key, amount=Decimal(1), period=Budget.Period.DAILY)
    Budget.objects.create(tenant=globex.tenant, amount=Decimal(999), period=Budget.Period.MONTHLY)
    make_usage(api_key=acme.key, cost="2.499")

    [tenant_line, key_line] = tenant_overview(tenant=acme.tenant, now=timezone.now()).budgets
    page = signed_in(TenantRole.VIEWER).get("/portal/acme/").content

    assert (tenant_line.progress.spent, tenant_line.remaining, tenant_line.filled) == (
        Decimal("2.5"),
        Decimal("7.5"),
        25,
    )
    assert (key_line.progress.spent, key_line.remaining, key_line.filled) == (Decimal("2.5"), Decimal(0), 100)
    assert b"$7.50" in page
    assert b'<progress max="100" value="25">' in page
    assert b"$999" not in page


def test_no_budget_says_spending_is_not_capped(signed_in: SignedIn, acme: Tenancy) -> None:
    assert b"No budget is set" in signed_in(TenantRole.VIEWER).get("/portal/acme/").content


def test_rate_limits_of_the_tenant_and_its_keys_are_shown(signed_in: SignedIn, acme: Tenancy, globex: Tenancy) -> None:
    RateLimit.objects.create(tenant=acme.tenant, requests_per_minute=600, tokens_per_minute=90_000)
    RateLimit.objects.create(api_key=acme.key, model="mini", max_concurrent=4)
    RateLimit.objects.create(tenant=globex.tenant, requests_per_minute=12345)

    page = signed_in(TenantRole.VIEWER).get("/portal/acme/").content.decode()

    assert "600" in page
    assert "90000" in page
    assert "key acme ci" in page
    assert "12345" not in page
