"""The whole console and portal in a real browser, as a new operator and a tenant's admin use them.

An operator signs in to the console, creates a tenant, a user who will be the
tenant's admin, and a key. A program calls with that key through the official
SDK. The call then shows in the tenant's usage report and on the dashboard,
and the report's CSV export says the same. The tenant's admin signs in to the
portal, makes a key and revokes it, and sees only their tenant; someone of
another tenant gets 404s for it. The ledger's list shows its nine columns at
1280 px without scrolling sideways.

Every page the browser opens must load without a console or JavaScript error
(tests/browser.py). With PORTICO_SCREENSHOTS set to a directory, the walk saves
the pictures the README shows there (docs/images/).
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Collection
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from openai import OpenAI
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from billing.models import Price, UsageRecord
from billing.rollups import usage_rollups_update
from providers.models import ModelRoute
from tenants.models import ApiKey, Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_tenant
from tests.browser import BrowserErrors
from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

OPERATOR_PASSWORD = "an operator's long passphrase 1"
ADMIN_PASSWORD = "a tenant admin's long passphrase 2"
# A server writes its ledger every half second; a row much later than that is lost, not late.
LEDGER_TIMEOUT = 15.0
SNAPSHOT_TIMEOUT = 15.0


@pytest.fixture
def operator(committed_db: None, tag: str) -> str:
    username = f"operator-{tag}"
    get_user_model().objects.create_superuser(
        username=username, email=f"{username}@example.com", password=OPERATOR_PASSWORD
    )
    return username


@pytest.fixture
def priced_route(echo_route: ModelRoute) -> ModelRoute:
    # A price large enough that one short call costs a visible amount.
    Price.objects.create(route=echo_route.model, input_per_million=Decimal("1000"), output_per_million=Decimal("3000"))
    return echo_route


def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get("PORTICO_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


def console_sign_in(page: Page, portico: PorticoServer, username: str) -> None:
    page.goto(portico.url("/admin/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def portal_sign_in(page: Page, portico: PorticoServer, username: str, password: str) -> None:
    page.goto(portico.url("/portal/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def wait_for_ledger_row(key_prefix: str) -> UsageRecord:
    deadline = time.monotonic() + LEDGER_TIMEOUT
    while time.monotonic() < deadline:
        row = UsageRecord.objects.filter(key_prefix=key_prefix).first()
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no ledger row for the key {key_prefix} within {LEDGER_TIMEOUT:g} s")


def test_an_operator_sets_up_a_tenant_whose_usage_reaches_the_reports_and_the_portal(
    browser: Browser,
    browser_errors: BrowserErrors,
    page: Page,
    portico: PorticoServer,
    operator: str,
    priced_route: ModelRoute,
    tag: str,
) -> None:
    tenant_name, slug, admin_name = f"Acme {tag}", f"acme-{tag}", f"ada-{tag}"
    model = priced_route.model.public_id

    # --- the operator, in the console ---
    console_sign_in(page, portico, operator)

    page.goto(portico.url("/admin/tenants/tenant/add/"))
    page.get_by_label("Name").fill(tenant_name)
    page.get_by_label("Name").press("Tab")
    expect(page.get_by_label("Slug")).to_have_value(slug)  # made from the name by the console's own script
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    tenant = Tenant.objects.get(slug=slug)

    page.goto(portico.url("/admin/auth/user/add/"))
    page.get_by_label("Username").fill(admin_name)
    page.locator("#id_password1").fill(ADMIN_PASSWORD)
    page.locator("#id_password2").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    # The tenant's admin is assigned on the tenant's page: a member row, the user found by the search box.
    page.goto(portico.url(f"/admin/tenants/tenant/{tenant.pk}/change/"))
    page.get_by_role("button", name=re.compile("add another member", re.IGNORECASE)).click()
    row = page.locator("#memberships-0")
    row.locator(".select2-selection").click()
    page.locator(".select2-search__field").fill(admin_name)
    page.locator(".select2-results__option", has_text=admin_name).click()
    row.locator("#id_memberships-0-role").select_option(TenantRole.ADMIN)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert tenant.memberships.filter(user__username=admin_name, role=TenantRole.ADMIN).exists()

    page.goto(portico.url("/admin/tenants/apikey/add/"))
    page.get_by_label("Tenant").select_option(label=str(tenant))
    page.get_by_label("Name").fill("checkout service")
    page.get_by_role("button", name="Save", exact=True).click()
    secret = page.locator("#portico-secret").input_value()
    assert secret.startswith("pk-")
    page.reload()  # the key is shown once: a reload shows no secret and makes no second key
    expect(page.locator("#portico-secret")).to_have_count(0)
    assert ApiKey.objects.filter(tenant=tenant).count() == 1

    # --- a program calls with the key, through the official SDK ---
    portico.wait_for_status(secret, 200, deadline=time.monotonic() + SNAPSHOT_TIMEOUT)
    client = OpenAI(base_url=portico.url("/v1"), api_key=secret, max_retries=0)
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello reports"}])
    assert answer.choices[0].message.content
    rows = UsageRecord.objects.filter(tenant=tenant)
    wait_for_ledger_row(ApiKey.objects.get(tenant=tenant).prefix)
    usage_rollups_update()
    served = list(rows)
    spent = sum((row.cost for row in served), Decimal(0))
    assert spent > 0

    # --- the tenant's report and the dashboard show it ---
    page.goto(portico.url(f"/admin/reports/tenants/{tenant.pk}/"))
    report = page.locator("#content")
    expect(report).to_contain_text(tenant_name)
    expect(report).to_contain_text(model)
    screenshot(page, "tenant-report")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV", exact=True).click()
    exported = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8"))))
    assert sum(int(line["requests"]) for line in exported) == len(served)
    assert sum(Decimal(line["cost"]) for line in exported) == spent

    page.goto(portico.url("/admin/"))
    expect(page.locator("#content")).to_contain_text(tenant_name)
    screenshot(page, "dashboard")

    # The ledger's list, narrowed to the tenant: every column on screen at the console's width.
    page.goto(portico.url(f"/admin/billing/usagerecord/?tenant={slug}"))
    headers = page.locator("#result_list thead th")
    expect(headers).to_have_count(len(LEDGER_COLUMNS))
    assert [text.strip().lower() for text in headers.all_inner_texts()] == list(LEDGER_COLUMNS)
    filters = page.locator("#changelist-filter").bounding_box()
    assert filters is not None
    for index in range(len(LEDGER_COLUMNS)):
        expect(headers.nth(index)).to_be_in_viewport()
        box = headers.nth(index).bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= filters["x"], f"{LEDGER_COLUMNS[index]} runs under the filters"
    # Neither the page nor the list's own box scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.locator("#changelist .results").evaluate("box => box.scrollWidth <= box.clientWidth")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(served))

    # Another tenant, whose name the first tenant's admin must never see.
    outsider_tenant = make_tenant(slug=f"other-{tag}")
    outsider_tenant.name = f"Globex {tag}"
    outsider_tenant.save(update_fields=["name"])

    # --- the tenant's admin, in the portal ---
    admin_context = browser.new_context(viewport={"width": 1280, "height": 800})
    watch(admin_context, browser_errors)
    try:
        portal = admin_context.new_page()
        portal_sign_in(portal, portico, admin_name, ADMIN_PASSWORD)
        portal.goto(portico.url(f"/portal/{slug}/"))
        expect(portal.locator("body")).to_contain_text(tenant_name)
        expect(portal.locator("body")).not_to_contain_text(outsider_tenant.name)

        portal.goto(portico.url(f"/portal/{slug}/requests/"))
        expect(portal.locator("body")).to_contain_text(model)

        portal.goto(portico.url(f"/portal/{slug}/usage/"))
        expect(portal.locator("body")).to_contain_text(model)
        screenshot(portal, "portal-usage")

        portal.goto(portico.url(f"/portal/{slug}/keys/"))
        portal.get_by_label("Name").fill("made in the portal")
        portal.get_by_role("button", name="Create key").click()
        made = portal.get_by_label("The new key").input_value()
        assert made.startswith("pk-")
        portal.reload()  # shown once: a reload neither shows it again nor makes another
        expect(portal.get_by_label("The new key")).to_have_count(0)
        key = ApiKey.objects.get(tenant=tenant, name="made in the portal")
        portal.goto(portico.url(f"/portal/{slug}/keys/{key.pk}/"))
        portal.get_by_role("button", name="Revoke this key").click()
        key.refresh_from_db()
        assert key.revoked_at is not None
        assert ApiKey.objects.filter(tenant=tenant).count() == 2

        # The portal lists this tenant and no other.
        portal.goto(portico.url("/portal/"))
        expect(portal.locator("body")).to_contain_text(tenant_name)
        expect(portal.locator("body")).not_to_contain_text(outsider_tenant.name)
        expect(portal.locator(f'a[href^="/portal/{outsider_tenant.slug}/"]')).to_have_count(0)
    finally:
        admin_context.close()

    # --- someone of another tenant ---
    outsider = get_user_model().objects.create_user(username=f"outsider-{tag}", password=ADMIN_PASSWORD)
    membership_create(tenant=outsider_tenant, user=outsider, role=TenantRole.ADMIN)
    first_key = ApiKey.objects.filter(tenant=tenant).order_by("pk").first()
    assert first_key is not None
    refused = [f"/portal/{slug}/", f"/portal/{slug}/usage/", f"/portal/{slug}/keys/{first_key.pk}/"]
    outsider_context = browser.new_context(viewport={"width": 1280, "height": 800})
    # The browser reports each 404 it is meant to get as a console error; any other error fails the walk.
    watch(outsider_context, browser_errors, expected_404s={portico.url(path) for path in refused})
    try:
        other = outsider_context.new_page()
        portal_sign_in(other, portico, outsider.username, ADMIN_PASSWORD)
        other.goto(portico.url("/portal/"))
        expect(other.locator("body")).to_contain_text(outsider_tenant.name)
        expect(other.locator("body")).not_to_contain_text(tenant_name)
        for path in refused:
            response = other.goto(portico.url(path))
            assert response is not None
            assert response.status == 404, path
            expect(other.locator("body")).not_to_contain_text(tenant_name)
    finally:
        outsider_context.close()


# The ledger list's columns, as its header reads them.
LEDGER_COLUMNS = ("time", "tenant", "key prefix", "model", "provider", "status", "tokens in → out", "cost", "latency")


def watch(context: BrowserContext, errors: BrowserErrors, *, expected_404s: Collection[str] = ()) -> None:
    """Report the context's console errors and uncaught exceptions, but for the 404s of `expected_404s`."""

    def console(message: ConsoleMessage) -> None:
        page = message.page.url if message.page else ""
        if message.type == "error" and page in expected_404s and "404" in message.text:
            return
        errors.console(message)

    context.on("console", console)
    context.on("weberror", lambda web_error: errors.uncaught(web_error.error))
