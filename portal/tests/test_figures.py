"""The portal's figures: money written by the one formatting function, and the request log counted cheaply."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import Budget, UsageRecord
from billing.money import format_money
from billing.rollups import usage_rollups_update
from billing.tests.factories import make_usage
from portal.tests.conftest import SignedIn, Tenancy
from portal.views import requests as request_views
from tenants.models import TenantRole

PAGES = re.compile(rb"Page (\d+) of (\d+)(\+?)")


def test_every_portal_page_writes_money_with_the_one_formatting_function(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    row = make_usage(api_key=acme.key, cost="1234.5678")
    Budget.objects.create(tenant=acme.tenant, amount=Decimal(5000), period=Budget.Period.MONTHLY)
    web = signed_in(TenantRole.VIEWER)
    month = acme.row.cost + row.cost

    overview = web.get("/portal/acme/").content.decode()
    listed = web.get("/portal/acme/requests/").content.decode()
    detail = web.get(f"/portal/acme/requests/{row.pk}/").content.decode()

    assert format_money(month) == "$1,234.57"
    assert f"<strong>{format_money(month)}</strong> spent" in overview
    assert format_money(Decimal(5000)) in overview  # the budget
    assert format_money(Decimal(5000) - month) in overview  # what is left of it
    assert "<td>$1,234.57</td>" in listed
    assert format_money(acme.row.cost) in listed
    assert "$1,234.57" in detail
    for page in (overview, listed, detail):
        assert not re.search(r"\$\d{4}", page), "an amount not written by format_money"


def test_the_whole_log_is_counted_from_the_rollups_not_by_reading_every_row(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    for _ in range(60):
        make_usage(api_key=acme.key)
    usage_rollups_update()
    for _ in range(45):  # not rolled up yet: counted from the ledger, past the rollups' cursor
        make_usage(api_key=acme.key)
    web = signed_in(TenantRole.VIEWER)

    with CaptureQueriesContext(connection) as queries:
        page = web.get("/portal/acme/requests/").content

    assert PAGES.search(page).groups() == (b"1", b"3", b"")  # 106 rows, 50 a page
    on_ledger = [query["sql"] for query in queries if '"billing_usagerecord"' in query["sql"]]
    assert on_ledger
    for sql in on_ledger:
        assert "LIMIT 50" in sql or re.search(r'"id" > \d+', sql), sql
    assert UsageRecord.objects.filter(tenant_id=acme.tenant.pk).count() == 106


def test_a_search_is_counted_up_to_a_cap(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(request_views, "MAX_COUNTED", 3)
    for _ in range(5):
        make_usage(api_key=acme.key, model="mini")
    web = signed_in(TenantRole.VIEWER)

    searched = web.get("/portal/acme/requests/?model=mini")
    few = web.get("/portal/acme/requests/?model=gpt")

    assert PAGES.search(searched.content).groups() == (b"1", b"1", b"+")
    assert b"Narrow the search to see older requests." in searched.content
    assert len(re.findall(rb"/portal/acme/requests/\d+/", searched.content)) == 3  # the newest of them
    assert PAGES.search(few.content).groups() == (b"1", b"1", b"")
    assert b"Narrow the search" not in few.content
