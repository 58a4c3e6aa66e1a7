"""A tenant's usage report in the console: the selector's figures, over the period asked, with its downloads.

acme's keys are `owner` and `teammate`; `outsider` is globex's. The ledger is
generated (billing/tests/ledger_rows.py) and rolled up; the clock is frozen
at NOW, in the middle of November 2026.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from billing.models import Budget, RateLimit
from billing.money import format_money
from billing.reports import tenant_report
from billing.rollups import usage_rollups_update
from billing.tests.factories import make_user
from billing.tests.ledger_rows import make_ledger
from billing.tests.report_html import inline_style_or_script, report_tables, table

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
START = datetime(2026, 11, 6, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 7), date(2026, 11, 12)


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def operator(frozen: None) -> Client:
    """Staff, with no model permission at all: reports are for every operator."""
    client = Client()
    client.force_login(make_user(staff=True))
    return client


@pytest.fixture
def ledger(owner, teammate, outsider) -> None:
    make_ledger(keys=[owner.api_key, teammate.api_key, outsider.api_key], rows=600, start=START, hours=9 * 24 + 12)
    usage_rollups_update()


def _url(tenant_id: int, query: str = "") -> str:
    return reverse("admin:tenant_report", args=[tenant_id]) + (f"?{query}" if query else "")


def test_the_report_prints_the_selector_s_figures_for_the_period(operator, ledger, tenant):
    report = tenant_report(tenant_id=tenant.pk, start=FIRST, end=LAST, now=NOW)
    assert report.totals.requests > 0

    response = operator.get(_url(tenant.pk, f"from={FIRST}&to={LAST}"))

    html = response.content.decode()
    assert response.status_code == 200
    for name, rows in report_tables(report).items():
        assert table(html, name) == rows, name
    days = table(html, "day-totals")
    assert [row[0] for row in days] == [f"2026-11-{day:02}" for day in range(7, 13)]
    assert [row[-1] for row in days] == [
        format_money(sum((line.cost for line in report.days if line.day == date(2026, 11, day)), Decimal(0)))
        for day in range(7, 13)
    ]
    assert f"<strong>{format_money(report.totals.cost)}</strong> spent" in html
    assert f"<strong>{format_money(report.statement.projected_cost)}</strong> at this pace" in html
    assert "<title>Usage of Acme | Portico</title>" in html


def test_the_period_is_the_month_so_far_unless_asked(operator, ledger, tenant):
    html = operator.get(_url(tenant.pk)).content.decode()

    assert 'name="from" value="2026-11-01"' in html
    assert 'name="to" value="2026-11-15"' in html
    assert len(table(html, "day-totals")) == 15


def test_the_last_day_a_date_can_name_is_a_period_like_any_other(operator, ledger, tenant):
    response = operator.get(_url(tenant.pk, "from=9999-12-31&to=9999-12-31"))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-11-12&to=2026-11-07", "The last day comes on or after the first."),
        ("from=2025-01-01&to=2026-11-07", "A report covers at most 366 days."),
        ("from=yesterday&to=2026-11-07", "Enter a valid date."),
    ],
)
def test_a_bad_period_is_refused_with_its_reason(operator, tenant, query, message):
    response = operator.get(_url(tenant.pk, query))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert "days-by-model" not in response.content.decode()


def test_the_statement_shows_budgets_as_progress_bars_and_the_rate_limits(operator, ledger, tenant, owner):
    Budget.objects.create(tenant=tenant, period="monthly", amount=Decimal("1000"), soft_limit_percent=80)
    RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", requests_per_minute=600)
    [use] = tenant_report(tenant_id=tenant.pk, start=FIRST, end=LAST, now=NOW).statement.budgets

    html = operator.get(_url(tenant.pk)).content.decode()

    assert table(html, "budgets") == [
        ["Acme", "monthly (2026-11)", format_money(use.spent), "$1,000.00", f"{use.used:.1%}", "—"]
    ]
    assert f'<meter min="0" max="1" low="0.8000" high="1" optimum="0" value="{use.used:.4f}">' in html
    assert table(html, "rate-limits") == [["owner", "gpt-4o", "600", "—", "—"]]


def test_the_downloads_export_the_same_tenant_and_period_to_a_signed_in_operator(operator, ledger, tenant):
    report = tenant_report(tenant_id=tenant.pk, start=FIRST, end=LAST, now=NOW)
    html = operator.get(_url(tenant.pk, f"from={FIRST}&to={LAST}")).content.decode()
    links = dict(re.findall(r'<a href="([^"]+)" download>(CSV|JSON)</a>', html))
    csv_url = next(url for url, label in links.items() if label == "CSV").replace("&amp;", "&")

    response = operator.get(csv_url)

    assert csv_url.startswith("/api/usage/report/?")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["tenant_id"] for row in rows} == {str(tenant.pk)}
    assert {row["day"] for row in rows} == {f"2026-11-{day:02}" for day in range(7, 13)}
    assert sum(int(row["requests"]) for row in rows) == report.totals.requests
    assert sum(Decimal(row["cost"]) for row in rows) == report.totals.cost
    assert any(label == "JSON" and "format=json" in url for url, label in links.items())


def test_a_signed_in_user_who_is_neither_operator_nor_tenant_admin_gets_no_export(frozen, ledger, tenant):
    client = Client()
    client.force_login(make_user())

    response = client.get(f"/api/usage/report/?tenant={tenant.pk}&from={FIRST}&to={LAST}")

    assert response.status_code == 403


def test_a_deleted_tenant_keeps_its_report(operator, ledger, outsider):
    globex = outsider.api_key.tenant
    before = tenant_report(tenant_id=globex.pk, start=FIRST, end=LAST, now=NOW)
    globex_id = globex.pk
    globex.delete()

    html = operator.get(_url(globex_id, f"from={FIRST}&to={LAST}")).content.decode()

    assert f"Usage of tenant #{globex_id}" in html
    assert table(html, "days-by-model") == report_tables(before)["days-by-model"]


def test_the_tenant_page_and_the_dashboard_link_to_the_report(operator, ledger, tenant):
    superuser = Client()
    superuser.force_login(get_user_model().objects.create_superuser(username="root"))

    tenant_page = superuser.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()
    home = operator.get(reverse("admin:index") + "?window=7d").content.decode()

    assert f'<a href="{_url(tenant.pk)}">Usage report</a>' in tenant_page
    assert f'<a href="{_url(tenant.pk)}">Acme</a>' in home


def test_the_report_keeps_to_the_content_security_policy(operator, ledger, tenant):
    response = operator.get(_url(tenant.pk))

    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert inline_style_or_script(response.content.decode()) == []
    assert response.content.decode().count('<svg class="chart') == 4


def test_the_tokens_chart_stacks_each_day_by_model_as_the_spend_chart_does(operator, ledger, tenant):
    report = tenant_report(tenant_id=tenant.pk, start=FIRST, end=LAST, now=NOW)
    assert len({line.model for line in report.days}) > 1

    html = operator.get(_url(tenant.pk, f"from={FIRST}&to={LAST}")).content.decode()

    tokens = html[html.index("<h2>Tokens per day, by model</h2>") :]
    chart = tokens[: tokens.index("</svg>")]
    assert 'class="chart chart-stacked"' in chart
    # Each model's tokens of each day is a segment of that day's column, named in its tooltip.
    segments = re.findall(r"<title>(\d\d-\d\d) · ([^:<]+): ([\d,]+) tokens</title>", chart)
    expected = {
        (line.day.strftime("%m-%d"), line.model, f"{line.prompt_tokens + line.completion_tokens:,}")
        for line in report.days
        if line.prompt_tokens + line.completion_tokens
    }
    assert set(segments) == expected
    # A model has the spend chart's colour.
    spend = html[html.index("<h2>Spend per day, by model</h2>") : html.index("<h2>Tokens per day, by model</h2>")]
    legend = re.compile(r'<g class="legend"><rect [^>]*fill="(#\w+)"/><text [^>]*>([^<]+)</text></g>')
    colours = {model: colour for colour, model in legend.findall(chart)}
    assert colours == {model: colour for colour, model in legend.findall(spend)}
    assert len(set(colours.values())) == len(colours) > 1
