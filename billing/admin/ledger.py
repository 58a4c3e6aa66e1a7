"""The usage ledger in the console.

The ledger is evidence, not configuration: its pages can be read and searched
but nothing in them adds, changes or deletes a row. The list is built to stay
quick on a ledger of millions of rows:

- Its filters are built from the tenants, public models, providers, operations
  and status classes, never from DISTINCT queries over the ledger.
- One aggregate query both counts the rows listed (for the paginator) and sums
  their tokens and cost (for the totals line). When the filters are the
  tenant, key, model, provider and whole days only, it reads the daily
  rollups (plus the rows they have not counted yet), not the rows listed.
- It has no date hierarchy: the admin's runs a DISTINCT over every row of the
  range on each page view. The "created at" filter gives today, the past
  7 days, this month and this year without a query, and one day is
  `?created_at__year=2026&created_at__month=11&created_at__day=14`.
- The tenant filter is a search box (a datalist of slugs, no script) rather
  than a link per tenant; a key's rows are reached from the key's page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.models import UsageRecord
from billing.money import format_money
from billing.selectors import UsageSums, rolled_usage_sums, usage_sums
from providers.adapters.base import OPERATIONS
from providers.models import Provider, PublicModel
from tenants.models import ApiKey, Tenant

# The detail page's fields shown through a display method, which formats them.
_SHOWN = {"cost": "cost_shown", "provider_cost": "provider_cost_shown"}


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("2", "2xx served"), ("4", "4xx refused"), ("5", "5xx failed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        if self.value() not in {"2", "4", "5"}:
            return queryset
        low = int(self.value()) * 100  # type: ignore[arg-type]
        return queryset.filter(status__gte=low, status__lt=low + 100)


class TenantFilter(admin.SimpleListFilter):
    """By tenant slug, typed (with the browser's suggestions from a datalist) rather than picked from a long list."""

    title = "tenant"
    parameter_name = "tenant"
    template = "admin/billing/usagerecord/tenant_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Tenant.objects.order_by("slug").values_list("slug", "name"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        return queryset.filter(tenant__slug=self.value()) if self.value() else queryset

    def choices(self, changelist: Any) -> Any:
        # The form sends this filter's value alone; the other filters, the search and the order ride along hidden.
        self.kept_params = [(name, value) for name, value in changelist.params.items() if name != self.parameter_name]
        self.all_query_string = changelist.get_query_string(remove=[self.parameter_name])
        return super().choices(changelist)


class KeyFilter(admin.SimpleListFilter):
    """One key's rows, as linked from the key's page; listed only while it is chosen (keys are too many to list)."""

    title = "API key"
    parameter_name = "api_key"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if not value:
            return []
        if not value.isdigit():
            return [(value, "no such key")]
        key = ApiKey.objects.filter(pk=value).first()
        return [(value, str(key) if key else f"key #{value} (deleted)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(api_key_id=int(value)) if value.isdigit() else queryset.none()


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(public_id, public_id) for public_id in PublicModel.objects.values_list("public_id", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        return queryset.filter(model=self.value()) if self.value() else queryset


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in Provider.objects.values_list("name", flat=True)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        return queryset.filter(provider=self.value()) if self.value() else queryset


class OperationFilter(admin.SimpleListFilter):
    title = "operation"
    parameter_name = "operation"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(operation, operation) for operation in OPERATIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        return queryset.filter(operation=self.value()) if self.value() else queryset


class LedgerPaginator(Paginator):
    """Counts the rows listed with the same aggregate query that totals them.

    When the rows are chosen by tenant, key, model, provider and whole UTC days alone, the totals come from
    the daily rollups (and the few rows they have not counted yet): the same figures, without reading
    every listed row, so a busy tenant's month costs what a quiet one's does.
    """

    rolled_filters: dict[str, Any] | None = None

    @cached_property
    def totals(self) -> UsageSums:
        if self.rolled_filters is not None:
            return rolled_usage_sums(**self.rolled_filters)
        return usage_sums(records=cast("QuerySet[UsageRecord]", self.object_list))

    @cached_property
    def count(self) -> int:
        return self.totals.requests


# The list's own parameters (page, order) and those of the filters the rollups can answer.
_PAGING = {"p", "o"}
_ROLLED = {"tenant", "api_key", "model", "provider", "created_at__gte", "created_at__lt"}


def rolled_filters(params: Mapping[str, str]) -> dict[str, Any] | None:
    """The `rolled_usage_sums` arguments these list parameters amount to; None if the rollups cannot total them."""
    if not set(params) <= _PAGING | _ROLLED:
        return None
    filters: dict[str, Any] = {}
    if params.get("tenant"):
        tenant_id = Tenant.objects.filter(slug=params["tenant"]).values_list("pk", flat=True).first()
        if tenant_id is None:
            return None
        filters["tenant_id"] = tenant_id
    if params.get("api_key"):
        if not params["api_key"].isdigit():
            return None
        filters["api_key_id"] = int(params["api_key"])
    for name in ("model", "provider"):
        if params.get(name):
            filters[name] = params[name]
    for param, bound in (("created_at__gte", "start"), ("created_at__lt", "end")):
        if params.get(param):
            # The "created at" filter gives midnights with their offset: "2026-11-15 00:00:00+00:00".
            try:
                when = parse_datetime(params[param])
            except ValueError:
                return None
            if when is None or when.tzinfo is None or when != _utc_midnight(when):
                return None
            filters[bound] = when
    return filters


def _utc_midnight(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def totals_line(sums: UsageSums) -> str:
    return (
        f"{sums.requests:,} requests · {sums.prompt_tokens:,} → {sums.completion_tokens:,} tokens · "
        f"{format_money(sums.cost)}"
    )


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "time",
        "tenant",
        "key_prefix",
        "model",
        "provider",
        "status",
        "tokens",
        "cost_shown",
        "latency",
    ]
    list_display_links = ["time"]
    list_filter = [
        StatusFilter,
        TenantFilter,
        KeyFilter,
        ModelFilter,
        ProviderFilter,
        OperationFilter,
        "streamed",
        "created_at",
    ]
    list_select_related = ["tenant"]
    search_fields = ["=request_id", "=client_request_id", "^key_prefix", "model"]
    search_help_text = "An exact request id or client request id, the start of a key prefix, or part of a model id."
    list_per_page = 100
    paginator = LedgerPaginator
    # Counting every ledger row on each page view costs more than the number is worth.
    show_full_result_count = False

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[UsageRecord],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> LedgerPaginator:
        paginator = LedgerPaginator(queryset, per_page, orphans, allow_empty_first_page)
        # The list's time filters are in the console's time zone; the rollups' days are UTC.
        if settings.TIME_ZONE == "UTC":
            paginator.rolled_filters = rolled_filters(request.GET)
        return paginator

    def get_fields(self, request: HttpRequest, obj: UsageRecord | None = None) -> list[str]:
        return [_SHOWN.get(name, name) for name in super().get_fields(request, obj)]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # The widest list of the console: without the side navigation its nine columns and the filters fit
        # 1280 px with no sideways scroll (the breadcrumbs still lead back).
        extra_context = {"is_nav_sidebar_enabled": False, **(extra_context or {})}
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # not a redirect for a bad filter
            response.context_data["ledger_totals"] = totals_line(changelist.paginator.totals)  # type: ignore[attr-defined]
        return response

    @admin.display(description="time", ordering="created_at")
    def time(self, record: UsageRecord) -> str:
        return f"{timezone.localtime(record.created_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="tokens in → out")
    def tokens(self, record: UsageRecord) -> str:
        text = f"{record.prompt_tokens:,} → {record.completion_tokens:,}"
        if record.cached_tokens:
            text += f" ({record.cached_tokens:,} cached)"
        return f"~{text}" if record.tokens_estimated else text

    @admin.display(description="cost", ordering="cost")
    def cost_shown(self, record: UsageRecord) -> str:
        return format_money(record.cost)

    @admin.display(description="provider cost", ordering="provider_cost")
    def provider_cost_shown(self, record: UsageRecord) -> str:
        return format_money(record.provider_cost)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, record: UsageRecord) -> str:
        return f"{record.latency_ms:,} ms"
