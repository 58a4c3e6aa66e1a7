"""Rate limits, budgets and budget alerts.

A limit or budget is checked by the same rules as in the management API
(`billing.services.rate_limit_check`, `budget_check`) and written by the same
services. As there, its owner (and a limit's model) is chosen when it is
created and fixed after: to move one, delete it and add another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing.admin.ledger import ReadOnlyAdmin
from billing.models import Budget, BudgetAlert, RateLimit
from billing.money import format_money
from billing.selectors import budgets_with_spend
from billing.services import (
    DUPLICATE,
    NOT_ONE_OWNER,
    budget_check,
    budget_set,
    rate_limit_check,
    rate_limit_set,
)
from tenants.models import Tenant
from tenants.serializers import ROW_ID_MAX

_OWNER = ("tenant", "api_key")
_OWNER_SEARCH: tuple[str, ...] = (
    "tenant__name",
    "tenant__slug",
    "api_key__name",
    "api_key__prefix",
    "api_key__tenant__slug",
)
# The console is for staff, who may know of every model: they are told when one exists but is not the tenant's.
_OPERATOR = True


class OwnerTenantFilter(admin.SimpleListFilter):
    """A tenant's limits or budgets: its own and its keys'."""

    title = "tenant"
    parameter_name = "owner_tenant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(tenant.pk), tenant.name) for tenant in Tenant.objects.only("name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not (value.isascii() and value.isdigit()) or int(value) > ROW_ID_MAX:
            # A hand-edited address: the admin shows the whole list with its "invalid filter" note, not a 500.
            raise IncorrectLookupParameters(f"No tenant has the id {value!r}.")
        return queryset.filter(Q(tenant_id=value) | Q(api_key__tenant_id=value))


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
    """Runs the management API's check on a limit or budget, reading what the form does not show (a fixed owner
    or model) from the row being changed."""

    fixed: tuple[str, ...] = _OWNER

    def value(self, name: str) -> Any:
        return self.cleaned_data.get(name) if name in self.fields else getattr(self.instance, name)

    def field_at_fault(self, code: str | None) -> str | None:
        """Where to say an error about the whole row: at the owner field to change."""
        if code in {NOT_ONE_OWNER, DUPLICATE}:
            return "api_key" if self.value("api_key") else "tenant"
        return None

    def check(self, rule: Callable[..., None], **values: Any) -> None:
        # Fields not read (an owner not found, say) are reported already: checking without them would mislead.
        if any(self.has_error(name) for name in (*self.fixed, *values) if name in self.fields):
            return
        try:
            rule(**values, replacing=self.instance if self.instance.pk else None)
        except ValidationError as error:
            field = self.field_at_fault(getattr(error, "code", None))
            if field not in self.fields:
                raise
            # Said at a field, it is not said again by the model's constraints, which pass over fields in error.
            self.add_error(field, error)


class RateLimitForm(OwnedForm):
    fixed = (*_OWNER, "model")

    class Meta:
        model = RateLimit
        fields = [*_OWNER, "model", "requests_per_minute", "tokens_per_minute", "max_concurrent"]

    def field_at_fault(self, code: str | None) -> str | None:
        return "model" if code == DUPLICATE else super().field_at_fault(code)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        owner = {"tenant": self.value("tenant"), "api_key": self.value("api_key")}
        self.check(rate_limit_check, **owner, model=self.value("model"), operator=_OPERATOR)
        return cleaned


class BudgetForm(OwnedForm):
    class Meta:
        model = Budget
        fields = [*_OWNER, "period", "amount", "soft_limit_percent"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        owner = {"tenant": self.value("tenant"), "api_key": self.value("api_key")}
        self.check(budget_check, **owner, soft_limit_percent=self.value("soft_limit_percent"))
        return cleaned


class OwnedAdmin(admin.ModelAdmin):
    autocomplete_fields = list(_OWNER)
    list_select_related = list(_OWNER)
    search_fields = _OWNER_SEARCH
    fixed: tuple[str, ...] = _OWNER

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), *(self.fixed if obj is not None else ()))

    @admin.display(description="tenant or key")
    def owner(self, row: RateLimit | Budget) -> str:
        return f"key {row.api_key}" if row.api_key_id else f"tenant {row.tenant}"


@admin.register(RateLimit)
class RateLimitAdmin(OwnedAdmin):
    form = RateLimitForm
    fixed = (*_OWNER, "model")
    list_display = ["owner", "model_or_all", "requests_per_minute", "tokens_per_minute", "max_concurrent"]
    list_filter = [OwnerKindFilter, OwnerTenantFilter, "model"]
    search_fields = (*_OWNER_SEARCH, "model")
    fields = [*_OWNER, "model", "requests_per_minute", "tokens_per_minute", "max_concurrent"]

    def save_model(self, request: HttpRequest, obj: RateLimit, form: forms.ModelForm, change: bool) -> None:
        saved = rate_limit_set(
            tenant=obj.tenant,
            api_key=obj.api_key,
            model=obj.model,
            requests_per_minute=obj.requests_per_minute,
            tokens_per_minute=obj.tokens_per_minute,
            max_concurrent=obj.max_concurrent,
        )
        obj.pk = saved.pk  # the admin's message and redirect name the row the service wrote

    @admin.display(description="model", ordering="model")
    def model_or_all(self, rate_limit: RateLimit) -> str:
        return rate_limit.model or "all models"


class BudgetAlertInline(admin.TabularInline):
    model = BudgetAlert
    fields = ["period", "level", "spent_shown", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="spent")
    def spent_shown(self, alert: BudgetAlert) -> str:
        return format_money(alert.spent)


@admin.register(Budget)
class BudgetAdmin(OwnedAdmin):
    form = BudgetForm
    list_display = ["owner", "period", "amount_shown", "soft_limit_percent", "spent"]
    list_filter = [OwnerKindFilter, OwnerTenantFilter, "period"]
    fields = [*_OWNER, "period", "amount", "soft_limit_percent"]
    inlines = [BudgetAlertInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return budgets_with_spend(budgets=super().get_queryset(request), now=timezone.now())

    def save_model(self, request: HttpRequest, obj: Budget, form: forms.ModelForm, change: bool) -> None:
        saved = budget_set(
            tenant=obj.tenant,
            api_key=obj.api_key,
            amount=obj.amount,
            period=obj.period,
            soft_limit_percent=obj.soft_limit_percent,
        )
        obj.pk = saved.pk  # as for rate limits

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, budget: Budget) -> str:
        return format_money(budget.amount)

    @admin.display(description="spent this period", ordering="spent")
    def spent(self, budget: Budget) -> str:
        return format_money(budget.spent)  # type: ignore[attr-defined]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ["budget", "period", "level", "spent_shown", "created_at"]
    list_filter = ["level", "created_at"]
    list_select_related = ["budget__tenant", "budget__api_key"]
    date_hierarchy = "created_at"
    fields = ["budget", "period", "level", "spent_shown", "created_at"]

    @admin.display(description="spent", ordering="spent")
    def spent_shown(self, alert: BudgetAlert) -> str:
        return format_money(alert.spent)
