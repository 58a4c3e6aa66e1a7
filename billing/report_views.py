"""The console's report pages, for operators: the dashboard's billing panels and a tenant's usage report.

`gateway.console.PorticoAdminSite` wires them in (its `index` and `get_urls`),
behind its `admin_view`: staff only, anyone else is sent to sign in. Each
reads one selector of billing/reports.py and lays it out with
billing/report_pages.py; the tenant portal shows the same report from the
same partial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from billing.report_pages import (
    DEFAULT_WINDOW,
    EXPORT_GROUPING,
    ReportPeriodForm,
    dashboard_panels,
    tenant_report_page,
)
from billing.reports import WINDOWS, dashboard, tenant_report
from providers.models import ModelRoute
from tenants.models import Tenant


def dashboard_context(request: HttpRequest, *, deployments: Sequence[ModelRoute]) -> dict[str, Any]:
    """The dashboard's billing panels over `?window=` (an unknown one reads as the default)."""
    window = request.GET.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    return {"panels": dashboard_panels(dashboard(window=window), deployments=deployments)}


def tenant_report_view(request: HttpRequest, tenant_id: int, *, context: dict[str, Any]) -> HttpResponse:
    """A tenant's usage over `?from=&to=`; a tenant deleted since still has its rollups, and so its report."""
    period = ReportPeriodForm(request.GET, today=timezone.now().date())
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    context = {**context, "tenant": tenant, "period": period, "title": f"Usage of {tenant or f'tenant #{tenant_id}'}"}
    if not period.is_valid():
        return TemplateResponse(request, "admin/billing/reports/tenant.html", context, status=400)
    start, end = period.period()
    report = tenant_report(tenant_id=tenant_id, start=start, end=end)
    query = urlencode({"tenant": tenant_id, "from": start, "to": end, "group_by": ",".join(EXPORT_GROUPING)})
    page = tenant_report_page(report, export_url=f"{reverse('usage-report')}?{query}")
    return TemplateResponse(request, "admin/billing/reports/tenant.html", {**context, "page": page})
