"""The tenant's request log: its own ledger rows, newest first, searchable and paginated."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from portal.access import tenant_page
from portal.forms import RequestSearchForm
from portal.pages import render_page
from portal.selectors import request_log
from tenants.models import TenantMembership

PAGE_SIZE = 50


@tenant_page()
def request_list(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    search = RequestSearchForm(request.GET)
    rows = request_log(tenant=membership.tenant, **search.filters())
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render_page(request, membership, "portal/requests.html", section="Requests", search=search, page=page)


@tenant_page()
def request_detail(request: HttpRequest, membership: TenantMembership, row_id: int) -> HttpResponse:
    row = get_object_or_404(request_log(tenant=membership.tenant), pk=row_id)
    return render_page(request, membership, "portal/request.html", section="Requests", row=row)
