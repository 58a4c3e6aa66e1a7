"""A tenant's overview: spend this month, budgets and rate limits."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from portal.access import tenant_page
from portal.pages import render_page
from portal.selectors import tenant_overview
from tenants.models import TenantMembership


@tenant_page()
def overview(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    summary = tenant_overview(tenant=membership.tenant, now=timezone.now())
    return render_page(request, membership, "portal/overview.html", section="Overview", overview=summary)
