"""The ledger's list in the console: compact columns, the tenant and key filters, and the totals of what it lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.tests.factories import make_usage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def _ledger(client, query: str = ""):
    return client.get(reverse("admin:billing_usagerecord_changelist") + query)


def _listed(response) -> list[int]:
    assert response.status_code == 200
    return sorted(row.pk for row in response.context["cl"].result_list)


def test_each_row_shows_time_owner_model_provider_status_tokens_cost_and_latency_compactly(admin_client, owner):
    record = make_usage(
        api_key=owner.api_key,
        created_at=NOW,
        provider="azure",
        status=429,
        prompt_tokens=1200,
        completion_tokens=34,
        cost="1234.5",
        latency_ms=2345,
    )

    html = _ledger(admin_client).content.decode()

    for shown in ["2026-11-15 12:00:00", "Acme", owner.api_key.prefix, "gpt-4o", "azure", "429"]:
        assert f">{shown}<" in html
    assert ">1,200 → 34<" in html
    assert ">$1,234.50<" in html
    assert ">2,345 ms<" in html
    assert record.request_id not in html  # on the row's own page, not in a column of the list


def test_a_rows_own_page_shows_its_costs_as_money(admin_client, owner):
    record = make_usage(api_key=owner.api_key, cost="0.0000125", provider_cost="12345.678")

    html = admin_client.get(reverse("admin:billing_usagerecord_change", args=[record.pk])).content.decode()

    assert "$0.0000125" in html
    assert "$12,345.68" in html


def test_the_tenant_filter_narrows_to_a_tenants_rows_and_keeps_the_other_filters(
    admin_client, owner, teammate, outsider
):
    mine = [make_usage(api_key=owner.api_key).pk, make_usage(api_key=teammate.api_key).pk]
    make_usage(api_key=teammate.api_key, status=500)
    make_usage(api_key=outsider.api_key)

    response = _ledger(admin_client, "?tenant=acme&status_class=2")

    assert _listed(response) == sorted(mine)
    html = response.content.decode()
    assert '<input type="hidden" name="status_class" value="2">' in html
    assert '<option value="globex">Globex</option>' in html  # the datalist the browser suggests slugs from
    assert _listed(_ledger(admin_client, "?tenant=no-such-tenant")) == []


def test_the_key_filter_narrows_to_one_keys_rows(admin_client, owner, teammate):
    mine = make_usage(api_key=owner.api_key)
    make_usage(api_key=teammate.api_key)

    response = _ledger(admin_client, f"?api_key={owner.api_key.pk}")

    assert _listed(response) == [mine.pk]
    assert str(owner.api_key) in response.content.decode()
    assert _listed(_ledger(admin_client, "?api_key=999999")) == []
    assert _listed(_ledger(admin_client, "?api_key=abc")) == []


def test_the_totals_cover_every_row_selected_on_every_page(admin_client, owner, outsider):
    for _ in range(105):
        make_usage(api_key=owner.api_key, prompt_tokens=10, completion_tokens=2, cost="0.01")
    make_usage(api_key=outsider.api_key, prompt_tokens=7, completion_tokens=7, cost="100")

    response = _ledger(admin_client, "?tenant=acme")

    assert len(response.context["cl"].result_list) == 100  # one page of them
    assert "105 requests · 1,050 → 210 tokens · $1.05" in response.content.decode()


def test_counting_and_totalling_the_rows_listed_take_one_query(admin_client, owner, teammate):
    for key in (owner, teammate, owner):
        make_usage(api_key=key.api_key, created_at=NOW - timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        response = _ledger(admin_client)

    on_ledger = [query["sql"] for query in queries if '"billing_usagerecord"' in query["sql"]]
    assert len(response.context["cl"].result_list) == 3
    assert len(on_ledger) == 2, on_ledger  # the totals (which give the count), then the page's rows
    assert "COUNT(" in on_ledger[0]
    assert "SUM(" in on_ledger[0]
