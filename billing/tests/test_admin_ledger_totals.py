"""The ledger list's totals: from the daily rollups when the filters allow it, exact either way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.admin.ledger import rolled_filters, totals_line
from billing.models import UsageRecord, UsageRollupCursor
from billing.rollups import usage_rollups_update
from billing.selectors import UsageSums
from billing.tests.ledger_rows import make_ledger

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
TODAY = datetime(2026, 11, 15, tzinfo=UTC)


@pytest.fixture
def ledger(owner, teammate, outsider):
    """Ten days of rows, rolled up; then some of this morning's, not rolled up yet."""
    keys = [owner.api_key, teammate.api_key, outsider.api_key]
    make_ledger(keys=keys, rows=300, start=datetime(2026, 11, 5, tzinfo=UTC), hours=10 * 24 + 6)
    assert usage_rollups_update().caught_up
    make_ledger(keys=keys, rows=30, start=TODAY.replace(hour=6), hours=6, seed=3)


def _line(**rows: object) -> str:
    sums = UsageRecord.objects.filter(**rows).aggregate(
        requests=Count("pk"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        cached_tokens=Sum("cached_tokens"),
        cost=Sum("cost"),
    )
    return totals_line(UsageSums(**sums))


def _page(client, query: str) -> str:
    response = client.get(reverse("admin:billing_usagerecord_changelist") + query)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {}),
        ({"p": "2", "o": "-1"}, {}),
        ({"tenant": "acme"}, {"tenant_id": "ACME"}),
        (
            {"api_key": "7", "model": "gpt-4o", "provider": "openai"},
            {"api_key_id": 7, "model": "gpt-4o", "provider": "openai"},
        ),
        (
            {"created_at__gte": "2026-11-15 00:00:00+00:00", "created_at__lt": "2026-11-16 00:00:00+00:00"},
            {"start": TODAY, "end": datetime(2026, 11, 16, tzinfo=UTC)},
        ),
        ({"q": "req-1"}, None),  # a search reads the rows
        ({"status_class": "5"}, None),
        ({"created_at__gte": "2026-11-15 10:00:00+00:00"}, None),  # not a whole day
        ({"created_at__gte": "2026-11-15"}, None),  # no time zone
        ({"created_at__gte": "yesterday"}, None),
        ({"tenant": "nobody"}, None),
        ({"api_key": "abc"}, None),
    ],
)
def test_only_filters_the_rollups_keep_are_totalled_from_them(tenant, params, expected):
    if expected and expected.get("tenant_id") == "ACME":
        expected = {"tenant_id": tenant.pk}

    assert rolled_filters(params) == expected


@time_machine.travel(NOW, tick=False)
def test_a_tenant_s_totals_come_from_the_rollups_and_count_its_newest_rows(admin_client, ledger, tenant):
    assert _line(tenant_id=tenant.pk) in _page(admin_client, "?tenant=acme")
    today = "?tenant=acme&created_at__gte=2026-11-15+00:00:00%2B00:00&created_at__lt=2026-11-16+00:00:00%2B00:00"
    assert _line(tenant_id=tenant.pk, created_at__gte=TODAY) in _page(admin_client, today)

    with CaptureQueriesContext(connection) as queries:
        _page(admin_client, "?tenant=acme")
    totals = [query["sql"] for query in queries if "SUM(" in query["sql"]]
    assert len(totals) == 1
    assert '"billing_dailyusagerollup"' in totals[0]
    # The ledger is read only past the rollups' cursor.
    assert f'V0."id" > {UsageRollupCursor.objects.get().last_id}' in totals[0]

    # The rolled-up rows' sums stay with the rollups; the listed rows are what is left.
    expected = _line(tenant_id=tenant.pk)
    UsageRecord.objects.filter(pk__lte=UsageRollupCursor.objects.get().last_id).delete()
    assert expected in _page(admin_client, "?tenant=acme")


@time_machine.travel(NOW, tick=False)
def test_a_search_totals_the_rows_it_finds(admin_client, ledger, tenant):
    row = UsageRecord.objects.filter(tenant_id=tenant.pk).order_by("pk").first()

    assert _line(pk=row.pk) in _page(admin_client, f"?tenant=acme&q={row.request_id}")


def test_the_list_leaves_the_side_navigation_out_to_fit_its_columns(admin_client, ledger):
    # The browser walk (tests/integration/test_console_walk.py) measures the columns at 1280 px.
    listed = _page(admin_client, "?tenant=acme")

    assert 'id="nav-sidebar"' not in listed
    assert 'id="nav-sidebar"' in admin_client.get(reverse("admin:billing_budget_changelist")).content.decode()
