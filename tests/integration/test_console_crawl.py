"""Every page of the console and the portal in a real browser, with some of everything in the database.

An operator signs in and opens the landing page, the dashboard (each window),
the list of models and settings, a tenant's report, and for every model the
console's admin site registers (read from the site, so a new one is crawled
without being named here) its list, its add page where there is one, and the
page of one of its rows. Then, in the same browser profile, a tenant's admin
signs in to the portal and opens the tenant's overview, usage, request log and
one request, keys (making one, which lands on the page that shows it once) and
members.

Each page must answer 200 (after any redirect), with no console error or
uncaught JavaScript exception (tests/browser.py) and no failed request for
anything it loads from Portico itself: a stylesheet, a script or an image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Model
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, Request, Response, expect

from audit.kinds import ActorKind, AuditAction, AuditOrigin
from audit.models import AuditEntry
from batches.models import File
from batches.tests.factories import jsonl, make_batch, request_line
from billing.models import Budget, BudgetAlert, DeploymentPrice, Price, RateLimit, UsageRecord
from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import make_ledger
from caching.models import CachePolicy
from gateway.models import BreakerTransition
from notifications.models import AlertDelivery, AlertEvent
from notifications.tests.factories import make_email_channel
from providers.models import DeploymentProbe, DiscoveredModel, ModelListSource
from providers.tests.factories import make_provider, make_route
from queueing.models import QueuedJob
from tenants.models import Tenant, TenantRole
from tenants.services import management_token_create, membership_create
from tenants.tests.factories import make_key, make_tenant
from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

OPERATOR_PASSWORD = "an operator's long passphrase 3"
ADMIN_PASSWORD = "a tenant admin's long passphrase 4"
DASHBOARD_WINDOWS = ("1h", "24h", "7d", "30d")


@dataclass
class Estate:
    """What the crawl finds in the database: the names it signs in with and the tenant it reports on."""

    operator: str
    tenant_admin: str
    tenant: Tenant
    # Rows no other fixture deletes, removed (children first) before the test's committed rows are.
    extras: list[Model] = field(default_factory=list)


@pytest.fixture
def estate(committed_db: None, tag: str) -> Iterator[Estate]:
    """A tenant with a key, an admin, budgets, limits and rolled-up usage; a priced public model on a provider
    with a cost; and at least one row of every other model the console lists."""
    users = get_user_model()
    operator = users.objects.create_superuser(
        username=f"operator-{tag}", email=f"operator-{tag}@example.com", password=OPERATOR_PASSWORD
    )
    tenant_admin = users.objects.create_user(username=f"admin-{tag}", password=ADMIN_PASSWORD)
    tenant = make_tenant(slug=f"crawled-{tag}")
    membership_create(tenant=tenant, user=tenant_admin, role=TenantRole.ADMIN)
    key = make_key(tenant=tenant, name="checkout").api_key

    provider = make_provider(kind="mock", name=f"mock-{tag}")
    route = make_route(provider=provider, public_id=f"mock-echo-{tag}", upstream_model="mock-echo")
    Price.objects.create(route=route.model, input_per_million=Decimal("2"), output_per_million=Decimal("6"))
    DeploymentPrice.objects.create(deployment=route, input_per_million=Decimal("1"), output_per_million=Decimal("3"))
    budget = Budget.objects.create(tenant=tenant, amount=Decimal("50"), soft_limit_percent=80)
    BudgetAlert.objects.create(budget=budget, period=f"{timezone.now():%Y-%m}", level="soft", spent=Decimal("41"))
    RateLimit.objects.create(api_key=key, requests_per_minute=60)
    CachePolicy.objects.create(tenant=tenant, model=route.model)
    channel = make_email_channel(tenant=tenant)
    AlertDelivery.objects.create(
        channel=channel, event=AlertEvent.BUDGET_SOFT, key=f"budget:{budget.pk}:soft", subject="80 %", text="80 %"
    )
    BreakerTransition.objects.create(
        route_id=route.pk, route_name=str(route), from_state="closed", to_state="open", at=timezone.now()
    )

    start = datetime.now(UTC) - timedelta(hours=3)
    make_ledger(keys=[key], rows=12, start=start, hours=2)
    make_ledger(keys=[key], rows=3, start=start, hours=2, seed=11, model=route.model.public_id, deployment_id=route.pk)
    usage_rollups_update()

    upload = jsonl([request_line("one", model=route.model.public_id)])
    batch = make_batch(key, upload)
    extras: list[Model] = [
        batch,
        *File.objects.filter(pk=batch.input_file_id),
        Group.objects.create(name=f"operators-{tag}"),
        management_token_create(user=operator)[0],
        DiscoveredModel.objects.create(provider=provider, upstream_id="mock-echo"),
        DeploymentProbe.objects.create(deployment=route, ok=True, latency_ms=42),
        ModelListSource.objects.create(name=f"list-{tag}", url="https://models.example.com/list.json"),
        QueuedJob.objects.create(
            tenant=tenant,
            api_key=key,
            key_prefix=key.prefix,
            operation="chat",
            path="/v1/chat/completions",
            model=route.model.public_id,
            body='{"messages": []}',
            deadline=timezone.now() + timedelta(minutes=1),
        ),
    ]
    # The audit log refuses deletes: this entry stays, as the users do.
    AuditEntry.objects.create(
        actor=operator.username,
        actor_kind=ActorKind.USER,
        origin=AuditOrigin.ADMIN,
        action=AuditAction.CREATE,
        model_label="providers.provider",
        object_id=str(provider.pk),
        object_repr=provider.name,
    )
    crawled = Estate(operator=operator.username, tenant_admin=tenant_admin.username, tenant=tenant, extras=extras)
    yield crawled
    for row in extras:
        type(row)._default_manager.filter(pk=row.pk).delete()


@dataclass
class FailedLoads:
    """Requests for Portico's own pages and assets that failed or were answered with an error."""

    origin: str
    seen: list[str] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> None:
        context.on("requestfailed", self._failed)
        context.on("response", self._answered)

    def _failed(self, request: Request) -> None:
        # Aborted: the browser gave it up as the crawl moved on (the admin's date widgets load their icons after
        # the page's load event), not an answer Portico failed to give.
        if request.url.startswith(self.origin) and request.failure != "net::ERR_ABORTED":
            self.seen.append(f"{request.method} {request.url} failed: {request.failure}")

    def _answered(self, response: Response) -> None:
        if response.url.startswith(self.origin) and response.status >= 400:
            self.seen.append(f"{response.request.method} {response.url} answered {response.status}")


def open_page(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None, url
    assert response.status == 200, f"{url} answered {response.status}"


def console_pages(estate: Estate) -> list[str]:
    """The console's own pages, then for each registered model its list, add page and one row's page."""
    operator = get_user_model().objects.get(username=estate.operator)
    request = RequestFactory().get("/admin/")
    request.user = operator
    pages = [reverse("landing"), reverse("admin:index"), reverse("admin:app_list")]
    pages += [f"{reverse('admin:index')}?window={window}" for window in DASHBOARD_WINDOWS]
    pages.append(reverse("admin:tenant_report", args=[estate.tenant.pk]))
    missing = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        if model_admin.has_add_permission(request):
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        row = model._default_manager.order_by("pk").first()
        if row is None:
            missing.append(opts.label)
        else:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
    assert not missing, f"the crawl has no row to open of {', '.join(missing)}: make one in `estate`"
    return pages


def portal_pages(estate: Estate) -> list[str]:
    slug = estate.tenant.slug
    request = UsageRecord.objects.filter(tenant_id=estate.tenant.pk).order_by("pk").first()
    assert request is not None
    return [
        reverse("portal:home"),
        reverse("portal:overview", args=[slug]),
        reverse("portal:usage", args=[slug]),
        reverse("portal:requests", args=[slug]),
        reverse("portal:request", args=[slug, request.pk]),
        reverse("portal:members", args=[slug]),
        reverse("portal:keys", args=[slug]),
    ]


def test_every_console_and_portal_page_loads_without_an_error(
    page: Page, browser_context: BrowserContext, portico: PorticoServer, estate: Estate
) -> None:
    failed = FailedLoads(origin=portico.base_url)
    failed.watch(browser_context)

    page.goto(portico.url(reverse("admin:login")))
    page.get_by_label("Username").fill(estate.operator)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    for path in console_pages(estate):
        open_page(page, portico.url(path))

    browser_context.clear_cookies()
    page.goto(portico.url(reverse("portal:login")))
    page.get_by_label("Username").fill(estate.tenant_admin)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    for path in portal_pages(estate):
        open_page(page, portico.url(path))
    # The last page was the keys: a key made there lands on the page that shows it once.
    page.get_by_label("Name").fill("made by the crawl")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_label("The new key")).to_be_visible()
    assert page.url == portico.url(reverse("portal:key-created", args=[estate.tenant.slug]))

    assert not failed.seen, "requests to Portico failed:\n" + "\n".join(failed.seen)
