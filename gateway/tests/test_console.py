"""The console's home: Portico's admin site, its dashboard and its list of models and settings.

The dashboard's figures are checked against `billing.reports.dashboard` over a
generated ledger, rolled up, at a frozen `NOW`; the providers panel against
real health checks and real breakers (this process's, local, put in place of
the shared ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import Budget
from billing.money import format_money
from billing.reports import dashboard
from billing.rollups import usage_rollups_update
from billing.tests.factories import make_user
from billing.tests.ledger_rows import make_ledger
from billing.tests.report_html import inline_style_or_script, table, tables
from gateway.breakers import LocalBreakers, TransitionLog
from gateway.console import PorticoAdminSite
from gateway.tests.test_breakers import RULES, FakeClock
from providers.models import DeploymentProbe, ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.models import ApiKey, Tenant
from tenants.signin import ThrottledAdminAuthenticationForm
from tenants.tests.factories import make_key, make_tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
START = datetime(2026, 11, 6, tzinfo=UTC)
HOME = "/admin/"


@pytest.fixture
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _signed_in(**user: bool) -> Client:
    client = Client()
    client.force_login(make_user(**user))
    return client


@pytest.fixture
def operator(frozen: None) -> Client:
    """A superuser: may test connections."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser(username="root"))
    return client


@pytest.fixture
def breakers(monkeypatch: pytest.MonkeyPatch) -> LocalBreakers:
    made = LocalBreakers(rules=RULES, clock=FakeClock(), history=TransitionLog())
    monkeypatch.setattr("gateway.admin.breakers_for_settings", lambda: made)
    return made


@pytest.fixture
def ledger(owner, teammate, outsider) -> None:
    """Ten days of generated traffic of acme's two keys and globex's, rolled up."""
    make_ledger(keys=[owner.api_key, teammate.api_key, outsider.api_key], rows=600, start=START, hours=9 * 24 + 12)
    usage_rollups_update()


def _money(amount: Decimal | None) -> str:
    return "—" if amount is None else format_money(amount)


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


# --- The site ---------------------------------------------------------------------------------------------


def test_the_console_is_portico_s_site_and_every_app_registers_with_it():
    assert isinstance(admin.site, PorticoAdminSite)
    for model in (Tenant, ApiKey, Provider, ModelRoute, Budget, DeploymentProbe):
        assert admin.site.is_registered(model), model
    assert admin.site.login_form is ThrottledAdminAuthenticationForm
    assert (admin.site.site_header, admin.site.index_title) == ("Portico", "Console")


def test_the_dashboard_is_the_console_s_home_and_keeps_its_branding(operator, breakers):
    html = operator.get(HOME).content.decode()

    assert "<title>Console | Portico</title>" in html
    assert 'id="providers"' in html
    assert reverse("admin:app_list") in html


def test_models_and_settings_list_every_app_as_the_admin_s_index_did(operator):
    response = operator.get(reverse("admin:app_list"))

    html = response.content.decode()
    assert "<title>Models and settings | Portico</title>" in html
    for name in ("tenants_tenant", "tenants_apikey", "providers_provider", "billing_budget"):
        assert reverse(f"admin:{name}_changelist") in html


@pytest.mark.parametrize("page", [HOME, "/admin/models/", "/admin/reports/tenants/1/"])
def test_only_staff_reach_the_console_pages_anyone_else_is_sent_to_sign_in(db, page):
    for client in (Client(), _signed_in(staff=False)):
        response = client.get(page)
        assert response.status_code == 302, page
        assert response["Location"].startswith("/admin/login/?next=")


# --- The dashboard's figures ------------------------------------------------------------------------------


def test_the_window_is_chosen_from_four_and_is_24_hours_unless_asked(operator, breakers):
    def current(html: str) -> list[str]:
        return re.findall(r'href="\?window=(\w+)" aria-current="page"', html)

    assert current(operator.get(HOME).content.decode()) == ["24h"]
    assert current(operator.get(HOME + "?window=7d").content.decode()) == ["7d"]
    assert current(operator.get(HOME + "?window=2w").content.decode()) == ["24h"]
    assert re.findall(r'href="\?window=(\w+)"', operator.get(HOME).content.decode()) == ["1h", "24h", "7d", "30d"]


@pytest.mark.parametrize("window", ["24h", "7d"])
def test_performance_and_spend_on_the_dashboard_are_the_selector_s(operator, breakers, ledger, tenant, window):
    board = dashboard(window=window, now=NOW)
    assert board.totals.requests > 0

    html = operator.get(f"{HOME}?window={window}").content.decode()

    performance = [rows[1:] for name, rows in tables(html) if name == "performance"]
    assert performance == [
        [
            [
                line.name,
                f"{line.requests:,}",
                _percent(line.success_rate),
                f"{line.requests_per_minute:,.2f}",
                _ms(line.latency_p50_ms),
                _ms(line.latency_p95_ms),
                _ms(line.ttft_p50_ms),
                _ms(line.ttft_p95_ms),
            ]
            for line in lines
        ]
        for lines in (board.providers, board.models)
    ]
    spend = [rows[1:] for name, rows in tables(html) if name == "spend"]
    assert spend == [
        [
            [
                line.name,
                f"{line.requests:,}",
                format_money(line.cost),
                format_money(line.provider_cost),
                _money(line.margin),
                "—" if line.margin is None else _percent(line.margin_coverage),
            ]
            for line in lines
        ]
        for lines in (board.spend_by_tenant, board.spend_by_provider, board.spend_by_model)
    ]
    assert f"<strong>{format_money(board.totals.cost)}</strong> charged to tenants" in html
    assert f'<a href="{reverse("admin:tenant_report", args=[tenant.pk])}">{tenant.name}</a>' in html


def test_budgets_show_their_use_as_progress_bars_linked_to_their_tenant_s_report(operator, breakers, ledger, tenant):
    Budget.objects.create(tenant=tenant, period="monthly", amount=Decimal("1000000"), soft_limit_percent=50)
    [use] = dashboard(window="24h", now=NOW).budgets

    html = operator.get(HOME).content.decode()

    assert table(html, "budgets") == [
        [tenant.name, f"monthly ({use.period_name})", format_money(use.spent), "$1,000,000.00", _percent(use.used)]
    ]
    assert f'<meter min="0" max="1" low="0.5000" high="1" optimum="0" value="{use.used:.4f}">' in html
    assert reverse("admin:tenant_report", args=[tenant.pk]) in html


def test_routing_shows_each_model_s_strategy_and_each_deployment_s_share(operator, breakers, owner):
    first = make_route(provider=make_provider(name="openai"), public_id="gpt-4o", strategy="weighted", weight=3)
    second = make_route(provider=make_provider(name="azure"), public_id="gpt-4o", weight=1, priority=1)
    idle = make_route(provider=make_provider(name="groq"), public_id="gpt-4o", priority=2, active=False)
    for route, rows in ((first, 30), (second, 10)):
        make_ledger(
            keys=[owner.api_key],
            rows=rows,
            start=NOW - timedelta(hours=5),
            hours=4,
            model="gpt-4o",
            provider=route.provider.name,
            deployment=route.name,
            deployment_id=route.pk,
        )
    usage_rollups_update()

    html = operator.get(HOME).content.decode()

    assert "weighted strategy · 40 requests" in html
    assert table(html, "shares") == [
        [first.name, "0", "3", "active", "30", "75.0%"],
        [second.name, "1", "1", "active", "10", "25.0%"],
        [idle.name, "2", "1", "inactive", "0", "0.0%"],
    ]
    chart = html[html.index("<title>Share of gpt-4o&#x27;s requests per deployment</title>") :]
    assert chart[: chart.index("</svg>")].count('class="bar"') == 3


# --- The providers panel ----------------------------------------------------------------------------------


def test_providers_show_each_deployment_s_health_breaker_and_last_error(operator, breakers):
    provider = make_provider(name="openai")
    healthy = make_route(provider=provider, public_id="gpt-4o", upstream_model="gpt-4o-2024")
    failing = make_route(provider=provider, public_id="mini", upstream_model="gpt-4o-mini")
    make_provider(name="spare", active=False)
    DeploymentProbe.objects.create(deployment=healthy, ok=True, latency_ms=123, probed_at=NOW - timedelta(minutes=3))
    DeploymentProbe.objects.create(
        deployment=failing, ok=False, latency_ms=30_000, reason="upstream_timeout", probed_at=NOW - timedelta(minutes=2)
    )
    for _ in range(RULES.consecutive_failures):
        breakers.record(failing.pk, failing.name, ok=False, reason="upstream_unavailable")

    html = operator.get(HOME).content.decode()

    rows = table(html, "providers")
    assert rows[0][:3] == ["openai mock", "", "active"]
    assert rows[1][:5] == ["gpt-4o-2024", "gpt-4o", "active", "ok, 123 ms 2026-11-15 12:27", "closed"]
    assert rows[2][:5] == ["gpt-4o-mini", "mini", "active", "failed: upstream_timeout 2026-11-15 12:28", "open"]
    assert rows[2][5].endswith("upstream_unavailable")
    assert rows[3][:4] == ["spare mock", "", "inactive", "No deployments."]
    test_connection = reverse("admin:providers_provider_test_connection", args=[provider.pk])
    assert f'<form method="post" action="{test_connection}">' in html


def test_test_connection_is_offered_only_to_those_who_may_change_providers(frozen, breakers):
    provider = make_provider(name="openai")
    viewer = make_user(staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_provider"))
    client = Client()
    client.force_login(viewer)

    html = client.get(HOME).content.decode()

    assert "openai" in html
    assert reverse("admin:providers_provider_test_connection", args=[provider.pk]) not in html


def test_the_test_connection_button_runs_the_check_it_names(operator, breakers):
    provider = make_provider(name="in-process", kind="mock")

    response = operator.post(reverse("admin:providers_provider_test_connection", args=[provider.pk]), follow=True)

    assert response.status_code == 200
    assert any("in-process" in str(message) for message in response.context["messages"])


# --- What the page costs ----------------------------------------------------------------------------------


def _estate(size: int, offset: int) -> None:
    """`size` providers, tenants with a key and a budget each, deployments with a health check, and traffic."""
    keys = []
    for index in range(offset, offset + size):
        route = make_route(provider=make_provider(name=f"p{index}"), public_id=f"m{index}")
        DeploymentProbe.objects.create(deployment=route, ok=True, latency_ms=100)
        tenant = make_tenant(slug=f"t{index}")
        Budget.objects.create(tenant=tenant, period="monthly", amount=Decimal(10))
        keys.append(make_key(tenant=tenant, name=f"k{index}").api_key)
    make_ledger(keys=keys, rows=20 * size, start=NOW - timedelta(hours=6), hours=5, seed=offset)
    usage_rollups_update()


def test_the_dashboard_reads_a_fixed_number_of_queries_however_much_it_shows(
    operator, breakers, django_assert_max_num_queries
):
    _estate(1, 0)
    with CaptureQueriesContext(connection) as small:
        assert operator.get(HOME).status_code == 200
    _estate(12, 1)

    with django_assert_max_num_queries(len(small)):
        html = operator.get(HOME).content.decode()

    assert all(f"p{index}" in html for index in range(13))
    assert len(table(html, "budgets")) == 13


def test_the_dashboard_keeps_to_the_content_security_policy(operator, breakers, ledger):
    make_route(provider=make_provider(name="openai"), public_id="gpt-4o")

    response = operator.get(HOME)

    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert inline_style_or_script(response.content.decode()) == []
    assert "<svg" in response.content.decode()
