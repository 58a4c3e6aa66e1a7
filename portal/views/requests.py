"""The tenant's request log: its own ledger rows, newest first, searchable and paginated.

A page reads its rows by the ledger's (tenant, time) index. The count behind
"page 1 of N" never walks all of a busy tenant's rows: the whole log's comes
from the daily rollups, a search's stops at MAX_COUNTED matches.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from billing.models import UsageRecord
from billing.selectors import rolled_usage_sums
from portal.access import tenant_page
from portal.forms import RequestSearchForm
from portal.pages import render_page
from portal.selectors import request_log
from tenants.models import TenantMembership

PAGE_SIZE = 50
MAX_COUNTED = 10_000


class RequestLogPaginator(Paginator):
    """Pages of rows whose count is given by `counted` rather than by counting the rows.

    With a `cap`, `counted` may stop at one past it: the pages then hold the newest `cap` rows.
    """

    def __init__(self, rows: QuerySet[UsageRecord], per_page: int, *, counted: Callable[[], int], cap: int | None):
        super().__init__(rows, per_page)
        self._counted = counted
        self._cap = cap

    @cached_property
    def _found(self) -> int:
        return self._counted()

    @cached_property
    def count(self) -> int:
        return self._found if self._cap is None else min(self._found, self._cap)

    @property
    def capped(self) -> bool:
        """Whether more rows match than the pages hold."""
        return self._cap is not None and self._found > self._cap


def _paginator(rows: QuerySet[UsageRecord], *, tenant_id: int, searched: bool) -> RequestLogPaginator:
    if not searched:
        return RequestLogPaginator(
            rows, PAGE_SIZE, counted=lambda: rolled_usage_sums(tenant_id=tenant_id).requests, cap=None
        )
    # One past the cap tells there are more.
    return RequestLogPaginator(rows, PAGE_SIZE, counted=lambda: rows[: MAX_COUNTED + 1].count(), cap=MAX_COUNTED)


@tenant_page()
def request_list(request: HttpRequest, membership: TenantMembership) -> HttpResponse:
    search = RequestSearchForm(request.GET)
    filters = search.filters()
    rows = request_log(tenant=membership.tenant, **filters)
    searched = any(value not in ("", None) for value in filters.values())
    paginator = _paginator(rows, tenant_id=membership.tenant.pk, searched=searched)
    page = paginator.get_page(request.GET.get("page"))
    return render_page(request, membership, "portal/requests.html", section="Requests", search=search, page=page)


@tenant_page()
def request_detail(request: HttpRequest, membership: TenantMembership, row_id: int) -> HttpResponse:
    row = get_object_or_404(request_log(tenant=membership.tenant), pk=row_id)
    return render_page(request, membership, "portal/request.html", section="Requests", row=row)
