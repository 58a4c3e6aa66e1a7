"""The usage page: the console's tenant report, for every role of the tenant, and its export.

acme's and globex's keys send generated traffic (billing/tests/ledger_rows.py),
rolled up; the clock is frozen at NOW, in the middle of November 2026.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from billing.models import Budget, RateLimit
from billing.money import usd
from billing.reports import report_rows, tenant_report
from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import make_ledger
from billing.tests.report_html import inline_style_or_script, report_tables, table, tables
from portal.tests.conftest import SignedIn, Tenancy
from tenants.models import TenantRole

NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 7), date(2026, 11, 12)
PERIOD = f"from={FIRST}&to={LAST}"
ROLES = [TenantRole.ADMIN, TenantRole.MEMBER, TenantRole.VIEWER]
REPORT_TABLES = ("days-by-model", "day-totals", "keys", "errors", "budgets", "rate-limits")


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def traffic(acme: Tenancy, globex: Tenancy) -> None:
    start = datetime(2026, 11, 6, tzinfo=UTC)
    make_ledger(keys=[acme.key, globex.key], rows=400, start=start, hours=9 * 24 + 12)
    usage_rollups_update()


def _export(client: Client, slug: str, query: str) -> list[dict[str, str]]:
    response = client.get(f"/portal/{slug}/usage/export/?{query}")
    assert response.status_code == 200, response.content
    return list(csv.DictReader(io.StringIO(response.getvalue().decode())))


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_the_tenant_s_report(
    frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy, role: str
) -> None:
    report = tenant_report(tenant_id=acme.tenant.pk, start=FIRST, end=LAST, now=NOW)
    assert report.totals.requests > 0

    response = signed_in(role).get(f"/portal/acme/usage/?{PERIOD}")

    html = response.content.decode()
    assert response.status_code == 200
    for name, rows in report_tables(report).items():
        assert table(html, name) == rows, name
    assert '<a href="/portal/acme/usage/" aria-current="page">Usage</a>' in html
    assert inline_style_or_script(html) == []


def test_the_portal_and_the_console_print_the_same_report(
    frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy
) -> None:
    Budget.objects.create(tenant=acme.tenant, period="monthly", amount=10)
    RateLimit.objects.create(api_key=acme.key, requests_per_minute=60)
    operator = Client()
    operator.force_login(User.objects.create_user(username="ops", is_staff=True))

    portal = signed_in(TenantRole.VIEWER).get(f"/portal/acme/usage/?{PERIOD}").content.decode()
    console = operator.get(reverse("admin:tenant_report", args=[acme.tenant.pk]) + f"?{PERIOD}").content.decode()

    def shown(html: str) -> list[tuple[str, list[list[str]]]]:
        return [(name, rows) for name, rows in tables(html) if name in REPORT_TABLES]

    assert [name for name, _rows in shown(portal)] == list(REPORT_TABLES)
    assert shown(portal) == shown(console)


def test_the_page_s_downloads_are_the_portal_s_own_export_of_the_same_period(
    frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy
) -> None:
    html = signed_in(TenantRole.VIEWER).get(f"/portal/acme/usage/?{PERIOD}").content.decode()

    assert f'<a href="/portal/acme/usage/export/?from={FIRST}&amp;to={LAST}&amp;format=csv" download>CSV</a>' in html
    assert f'<a href="/portal/acme/usage/export/?from={FIRST}&amp;to={LAST}&amp;format=json" download>JSON</a>' in html


@pytest.mark.parametrize("role", ROLES)
def test_the_export_holds_the_tenant_s_rows_without_what_providers_charge(
    frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy, role: str
) -> None:
    expected = list(report_rows(tenant_id=acme.tenant.pk, start=FIRST, end=LAST, group_by=["day", "model", "key"]))

    rows = _export(signed_in(role), "acme", PERIOD)

    assert list(rows[0]) == [
        "day",
        "model",
        "tenant_id",
        "api_key_id",
        "key_prefix",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_creation_tokens",
        "reasoning_tokens",
        "cost",
    ]
    assert [(row["day"], row["model"], row["api_key_id"], row["requests"], row["cost"]) for row in rows] == [
        (str(line.day), line.model, str(line.api_key_id), str(line.requests), usd(line.cost)) for line in expected
    ]
    assert {row["tenant_id"] for row in rows} == {str(acme.tenant.pk)}


def test_the_export_comes_as_json_too(frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy) -> None:
    response = signed_in(TenantRole.VIEWER).get(f"/portal/acme/usage/export/?{PERIOD}&format=json")

    rows = json.loads(response.getvalue())
    assert response["Content-Type"] == "application/json"
    assert 'filename="acme-usage-2026-11-07-2026-11-12.json"' in response["Content-Disposition"]
    assert (
        sum(row["requests"] for row in rows)
        == tenant_report(tenant_id=acme.tenant.pk, start=FIRST, end=LAST, now=NOW).totals.requests
    )
    assert all("provider_cost" not in row for row in rows)


@pytest.mark.parametrize("role", [*ROLES, "outsider"])
def test_another_tenant_s_usage_and_export_are_not_found(
    frozen: None, traffic: None, signed_in: SignedIn, acme: Tenancy, globex: Tenancy, role: str
) -> None:
    web = signed_in(role)
    theirs = "acme" if role == "outsider" else "globex"

    assert web.get(f"/portal/{theirs}/usage/?{PERIOD}").status_code == 404
    assert web.get(f"/portal/{theirs}/usage/export/?{PERIOD}").status_code == 404


def test_no_one_signed_in_is_sent_to_sign_in_for_the_export(acme: Tenancy) -> None:
    response = Client().get(f"/portal/acme/usage/export/?{PERIOD}")

    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/?next=")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (f"{PERIOD}&format=xlsx", "The format is one of csv, json."),
        ("from=2026-11-12&to=2026-11-07", "The last day comes on or after the first."),
    ],
)
def test_a_bad_export_is_refused_with_its_reason(
    frozen: None, signed_in: SignedIn, acme: Tenancy, query: str, message: str
) -> None:
    response = signed_in(TenantRole.VIEWER).get(f"/portal/acme/usage/export/?{query}")

    assert response.status_code == 400
    assert response.content.decode() == message


def test_the_last_day_a_date_can_name_reads_and_exports_like_any_other(
    frozen: None, signed_in: SignedIn, acme: Tenancy
) -> None:
    client = signed_in(TenantRole.VIEWER)
    period = "from=9999-12-31&to=9999-12-31"

    assert client.get(f"/portal/acme/usage/?{period}").status_code == 200
    assert client.get(f"/portal/acme/usage/export/?{period}").status_code == 200


def test_a_bad_period_on_the_page_is_refused_with_its_reason(frozen: None, signed_in: SignedIn, acme: Tenancy) -> None:
    response = signed_in(TenantRole.VIEWER).get("/portal/acme/usage/?from=2026-11-12&to=2026-11-07")

    assert response.status_code == 400
    assert "The last day comes on or after the first." in response.content.decode()
