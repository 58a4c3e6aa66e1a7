"""A tenant's usage report over any period, and its export: the console's report, for every role of the tenant.

The page includes the console's own partial (billing/reports/tenant_report.html)
laid out by `billing.report_pages`, so both print the same figures. The export
streams the same rows as the management API's (`billing.reports.report_rows`),
narrowed to this tenant, without what the providers charge: that is the
operators' business.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone

from billing.report_apis import export_columns, export_response
from billing.report_pages import EXPORT_GROUPING, ReportPeriodForm, tenant_report_page
from billing.reports import report_rows, tenant_report
from portal.access import tenant_page
from portal.pages import render_page
from tenants.models import TenantMembership

FORMATS = ("csv", "json")


@tenant_page()
def usage(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    period = ReportPeriodForm(request.GET, today=timezone.now().date())
    if not period.is_valid():
        response = render_page(request, membership, "portal/usage.html", section="Usage", period=period)
        response.status_code = 400
        return response
    start, end = period.period()
    report = tenant_report(tenant_id=membership.tenant_id, start=start, end=end)
    export = reverse("portal:usage-export", args=[membership.tenant.slug])
    page = tenant_report_page(report, export_url=f"{export}?{urlencode({'from': start, 'to': end})}")
    return render_page(request, membership, "portal/usage.html", section="Usage", period=period, page=page)


@tenant_page()
def usage_export(request: HttpRequest, membership: TenantMembership) -> HttpResponseBase:
    """Totals per day, model and key over `?from=&to=`, as `?format=csv` (the default) or `json`."""
    period = ReportPeriodForm(request.GET, today=timezone.now().date())
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        return _bad_request(f"The format is one of {', '.join(FORMATS)}.")
    if not period.is_valid():
        return _bad_request(" ".join(str(message) for messages in period.errors.values() for message in messages))
    start, end = period.period()
    rows = report_rows(tenant_id=membership.tenant_id, start=start, end=end, group_by=EXPORT_GROUPING)
    columns = export_columns(EXPORT_GROUPING, operator=False)
    name = f"{membership.tenant.slug}-usage-{start}-{end}.{fmt}"
    return export_response(request, rows, columns=columns, fmt=fmt, filename=name)


def _bad_request(message: str) -> HttpResponse:
    return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
