"""The operator's console for prices, rate limits, budgets and the usage ledger.

The ledger is evidence, not configuration: its pages can be read and
searched but nothing in them adds, changes or deletes a row. Its filters are
built from the public models, providers and status classes rather than from
DISTINCT queries over the ledger, which grows by a row per request.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing.models import Budget, BudgetAlert, DeploymentPrice, Price, RateLimit, UsageRecord
from billing.money import usd
from billing.selectors import budgets_with_spend
from providers.admin import ModelRouteAdmin, PublicModelAdmin
from providers.models import ModelRoute, Provider, PublicModel
from tenants.models import Tenant

_OWNER_SEARCH = ("tenant__name", "tenant__slug", "api_key__name", "api_key__prefix", "api_key__tenant__slug")


class PriceInline(admin.TabularInline):
    model = Price
    fields = ["effective_from", "input_per_million", "cached_input_per_million", "output_per_million"]
    extra = 0
    verbose_name_plural = "tenant prices (USD per 1M tokens; the latest that has started is in effect)"


class DeploymentPriceInline(admin.TabularInline):
    model = DeploymentPrice
    fields = ["effective_from", "input_per_million", "cached_input_per_million", "output_per_million"]
    extra = 0
    verbose_name_plural = "provider costs (USD per 1M tokens; the latest that has started is in effect)"


# providers sits below billing in Portico's layers and may not import it, so billing registers
# the public model and deployment pages again, as subclasses that add the price history.
admin.site.unregister(PublicModel)
admin.site.unregister(ModelRoute)


@admin.register(PublicModel)
class PricedPublicModelAdmin(PublicModelAdmin):
    inlines = [*PublicModelAdmin.inlines, PriceInline]


@admin.register(ModelRoute)
class CostedModelRouteAdmin(ModelRouteAdmin):
    inlines = [*ModelRouteAdmin.inlines, DeploymentPriceInline]


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["route", "effective_from", "input_per_million", "cached_input_per_million", "output_per_million"]
    list_filter = [("route__deployments__provider", admin.RelatedOnlyFieldListFilter), "effective_from"]
    list_select_related = ["route"]
    search_fields = ["route__public_id"]
    autocomplete_fields = ["route"]


@admin.register(DeploymentPrice)
class DeploymentPriceAdmin(admin.ModelAdmin):
    list_display = [
        "deployment",
        "provider",
        "effective_from",
        "input_per_million",
        "cached_input_per_million",
        "output_per_million",
    ]
    list_filter = ["deployment__provider", "effective_from"]
    list_select_related = ["deployment__model", "deployment__provider"]
    search_fields = ["deployment__model__public_id", "deployment__upstream_model", "deployment__provider__name"]
    autocomplete_fields = ["deployment"]

    @admin.display(description="provider", ordering="deployment__provider__name")
    def provider(self, price: DeploymentPrice) -> Provider:
        return price.deployment.provider


class OwnerTenantFilter(admin.SimpleListFilter):
    """A tenant's limits or budgets: its own and its keys'."""

    title = "tenant"
    parameter_name = "owner_tenant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(tenant.pk), tenant.name) for tenant in Tenant.objects.only("name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        return queryset.filter(Q(tenant_id=self.value()) | Q(api_key__tenant_id=self.value()))


class OwnerKindFilter(admin.SimpleListFilter):
    title = "set on"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("tenant", "a tenant"), ("key", "an API key")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "tenant":
            return queryset.filter(tenant__isnull=False)
        if self.value() == "key":
            return queryset.filter(api_key__isnull=False)
        return queryset


class OwnedForm(forms.ModelForm):
    """Says which field to fix when a limit or budget has no owner or two (the constraint alone would not)."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("tenant") and cleaned.get("api_key"):
            self.add_error("api_key", "Choose a tenant or an API key, not both.")
        elif not cleaned.get("tenant") and not cleaned.get("api_key") and not self.errors:
            self.add_error("tenant", "Choose a tenant or an API key.")
        return cleaned


class OwnedAdmin(admin.ModelAdmin):
    form = OwnedForm
    autocomplete_fields = ["tenant", "api_key"]
    list_select_related = ["tenant", "api_key"]
    search_fields = _OWNER_SEARCH

    @admin.display(description="tenant or key")
    def owner(self, row: RateLimit | Budget) -> str:
        return f"key {row.api_key}" if row.api_key_id else f"tenant {row.tenant}"


@admin.register(RateLimit)
class RateLimitAdmin(OwnedAdmin):
    list_display = ["owner", "model_or_all", "requests_per_minute", "tokens_per_minute", "max_concurrent"]
    list_filter = [OwnerKindFilter, OwnerTenantFilter, "model"]
    search_fields = (*_OWNER_SEARCH, "model")
    fields = ["tenant", "api_key", "model", "requests_per_minute", "tokens_per_minute", "max_concurrent"]

    @admin.display(description="model", ordering="model")
    def model_or_all(self, rate_limit: RateLimit) -> str:
        return rate_limit.model or "all models"


class BudgetAlertInline(admin.TabularInline):
    model = BudgetAlert
    fields = ["period", "level", "spent", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(OwnedAdmin):
    list_display = ["owner", "period", "amount", "soft_limit_percent", "spent"]
    list_filter = [OwnerKindFilter, OwnerTenantFilter, "period"]
    fields = ["tenant", "api_key", "period", "amount", "soft_limit_percent"]
    inlines = [BudgetAlertInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return budgets_with_spend(budgets=super().get_queryset(request), now=timezone.now())

    @admin.display(description="spent this period (USD)", ordering="spent")
    def spent(self, budget: Budget) -> str:
        return usd(budget.spent)  # type: ignore[attr-defined]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ["budget", "period", "level", "spent", "created_at"]
    list_filter = ["level", "created_at"]
    list_select_related = ["budget__tenant", "budget__api_key"]
    date_hierarchy = "created_at"


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


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "request_id",
        "created_at",
        "tenant",
        "key_prefix",
        "model",
        "provider",
        "tokens",
        "cost_usd",
        "latency_ms",
        "status",
        "streamed",
    ]
    list_filter = [StatusFilter, "streamed", "operation", ModelFilter, ProviderFilter, "created_at"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    search_fields = ["=request_id", "=client_request_id", "^key_prefix", "model"]
    search_help_text = "An exact request id or client request id, the start of a key prefix, or part of a model id."
    list_per_page = 100
    # Counting every ledger row on each page view costs more than the number is worth.
    show_full_result_count = False

    @admin.display(description="tokens in / out")
    def tokens(self, record: UsageRecord) -> str:
        text = f"{record.prompt_tokens} / {record.completion_tokens}"
        if record.cached_tokens:
            text += f" ({record.cached_tokens} cached)"
        return f"~{text}" if record.tokens_estimated else text

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_usd(self, record: UsageRecord) -> str:
        return usd(record.cost)
