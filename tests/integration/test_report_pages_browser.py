"""The usage report pages in a real browser: they draw their charts under the Content-Security-Policy, without a
console error, and their downloads work with the signed-in session (the console's through the management API's
export, the portal's through its own).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import make_ledger
from tenants.models import Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_key, make_tenant
from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture
def tenant(committed_db: None, tag: str) -> Tenant:
    """A tenant whose key sent requests over the last few hours, rolled up."""
    tenant = make_tenant(slug=f"reported-{tag}")
    key = make_key(tenant=tenant, name="ci").api_key
    make_ledger(keys=[key], rows=60, start=datetime.now(UTC) - timedelta(hours=3), hours=2)
    usage_rollups_update()
    return tenant


def _period() -> str:
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today}"


def test_an_operator_goes_from_the_dashboard_to_a_tenant_s_report_and_downloads_it(
    page: Page, portico: PorticoServer, tenant: Tenant, tag: str
) -> None:
    username = f"operator-{tag}"
    get_user_model().objects.create_superuser(username=username, email=f"{username}@example.com", password=PASSWORD)
    page.goto(portico.url("/admin/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Providers")).to_be_visible()
    page.get_by_role("link", name=tenant.name).first.click()
    page.goto(f"{page.url}?{_period()}")

    expect(page.locator("svg.chart-stacked")).to_have_count(2)  # spend and tokens, each stacked by model
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV", exact=True).click()
    assert download.value.suggested_filename.startswith("portico-usage-")
    assert "requests" in Path(download.value.path()).read_text().splitlines()[0]


def test_a_tenant_s_viewer_reads_the_report_in_the_portal_and_downloads_it(
    page: Page, portico: PorticoServer, tenant: Tenant, tag: str
) -> None:
    username = f"viewer-{tag}"
    viewer = get_user_model().objects.create_user(username=username, password=PASSWORD)
    membership_create(tenant=tenant, user=viewer, role=TenantRole.VIEWER)
    page.goto(portico.url("/portal/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.goto(portico.url(f"/portal/{tenant.slug}/usage/?{_period()}"))

    expect(page.locator("svg.chart-stacked")).to_have_count(2)
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV", exact=True).click()
    assert download.value.suggested_filename.startswith(f"{tenant.slug}-usage-")
    header = Path(download.value.path()).read_text().splitlines()[0]
    assert "requests" in header
    assert "provider_cost" not in header
