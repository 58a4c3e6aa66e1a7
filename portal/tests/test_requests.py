"""The request log: the tenant's own ledger rows, newest first, paginated, searchable."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from billing.models import UsageRecord
from billing.tests.factories import make_usage
from portal.tests.conftest import SignedIn, Tenancy
from portal.views.requests import PAGE_SIZE
from tenants.models import TenantRole
from tenants.tests.factories import make_key

ROW_LINK = re.compile(rb"/portal/acme/requests/(\d+)/")


def _listed(content: bytes) -> list[int]:
    return [int(pk) for pk in ROW_LINK.findall(content)]


def test_the_log_lists_the_tenant_s_rows_newest_first_and_none_of_another_s(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    now = timezone.now()
    older = make_usage(api_key=acme.key, created_at=now - timedelta(hours=2))
    newer = make_usage(api_key=acme.key, created_at=now + timedelta(seconds=1))

    page = signed_in(TenantRole.VIEWER).get("/portal/acme/requests/").content

    assert _listed(page) == [newer.pk, acme.row.pk, older.pk]
    assert globex.row.request_id.encode() not in page


def test_the_log_is_searched_by_request_id_model_key_prefix_and_status(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    other_key = make_key(tenant=acme.tenant, name="batch").api_key
    failed = make_usage(api_key=other_key, model="mini", status=429, client_request_id="client-abc")
    served = make_usage(api_key=other_key, model="gpt-4o-mini-2024")
    web = signed_in(TenantRole.VIEWER)

    def search(**query: str) -> list[int]:
        response = web.get("/portal/acme/requests/", query)
        assert response.status_code == 200
        return _listed(response.content)

    assert search(request_id=failed.request_id) == [failed.pk]
    assert search(request_id="client-abc") == [failed.pk]  # the x-request-id the client sent
    assert search(request_id=globex.row.request_id) == []
    assert search(model="mini") == [served.pk, failed.pk]
    assert search(model="gpt-4o") == [served.pk, acme.row.pk]
    assert search(key=other_key.prefix) == [served.pk, failed.pk]
    assert search(key=acme.key.prefix[:6] + "zz") == []
    assert search(key=globex.key.prefix) == []
    assert search(status="429") == [failed.pk]
    assert search(status="200", key=other_key.prefix) == [served.pk]


def test_a_malformed_search_says_so(signed_in: SignedIn, acme: Tenancy) -> None:
    response = signed_in(TenantRole.VIEWER).get("/portal/acme/requests/", {"status": "teapot"})

    assert response.status_code == 200
    assert b"Enter a whole number." in response.content


def test_the_log_is_paginated_and_pages_keep_the_search(signed_in: SignedIn, acme: Tenancy) -> None:
    start = timezone.now() - timedelta(days=1)
    rows = [
        make_usage(api_key=acme.key, model="mini", created_at=start + timedelta(seconds=i))
        for i in range(PAGE_SIZE + 3)
    ]
    newest_first = [row.pk for row in reversed(rows)]
    web = signed_in(TenantRole.VIEWER)

    first = web.get("/portal/acme/requests/", {"model": "mini"})
    second = web.get("/portal/acme/requests/", {"model": "mini", "page": "2"})

    assert _listed(first.content) == newest_first[:PAGE_SIZE]
    assert _listed(second.content) == newest_first[PAGE_SIZE:]
    assert b'href="?model=mini&amp;page=2"' in first.content
    assert UsageRecord.objects.filter(tenant_id=acme.tenant.pk).count() == PAGE_SIZE + 4


def test_a_row_s_page_shows_what_it_cost_but_not_who_served_it(signed_in: SignedIn, acme: Tenancy) -> None:
    row = make_usage(api_key=acme.key, cost="0.0123", provider="secret-upstream-provider", status=200)

    page = signed_in(TenantRole.VIEWER).get(f"/portal/acme/requests/{row.pk}/").content

    assert row.request_id.encode() in page
    assert b'<data value="0.0123000000">$0.01</data>' in page
    assert b"secret-upstream-provider" not in page
