"""The tenant and key pages, with what billing knows of their owner.

tenants sits below billing in Portico's layers and may not import it, so
billing registers the tenant and key pages again, as subclasses that add, on an
existing tenant's or key's page: a link to its ledger rows, its usage this
month, its rate limits and its budgets with their progress. Each is one read
from `billing.selectors`; a tenant's include its keys'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.money import format_money, usd
from billing.selectors import BudgetProgress, budgets_of, rate_limits_of, usage_this_month
from tenants.admin import ApiKeyAdmin, TenantAdmin
from tenants.models import ApiKey, Tenant

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

    _Base = admin.ModelAdmin
else:
    _Base = object

PANELS = ("ledger_rows", "month_usage", "limit_rows", "budget_progress")


def _owner_filter(owner: Tenant | ApiKey, *, ledger: bool = False) -> str:
    """The query string that narrows a changelist to the owner's rows (the ledger's tenant filter takes a slug)."""
    if isinstance(owner, ApiKey):
        return urlencode({"api_key": owner.pk})
    return urlencode({"tenant": owner.slug} if ledger else {"owner_tenant": owner.pk})


def _owner_query(owner: Tenant | ApiKey) -> str:
    """The add form's initial owner."""
    return urlencode({"api_key" if isinstance(owner, ApiKey) else "tenant": owner.pk})


def _owner_label(api_key: ApiKey | None) -> str:
    return f"key {api_key}" if api_key is not None else "the tenant"


def _budget_line(progress: BudgetProgress) -> dict[str, Any]:
    budget = progress.budget
    return {
        "pk": budget.pk,
        "owner": _owner_label(budget.api_key),
        "period": progress.period,
        "spent": format_money(progress.spent),
        "amount": format_money(budget.amount),
        "percent": progress.percent,
        # <meter> reads plain numbers: past `low` (the soft limit) it turns amber, at `high` red.
        "value": usd(min(progress.spent, budget.amount)),
        "max": usd(budget.amount),
        "low": usd(budget.amount * budget.soft_limit_percent / 100),
    }


class BillingPanels(_Base):
    """Adds the owner's ledger link, usage this month, rate limits and budgets to an existing owner's page."""

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> _FieldsetSpec:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [*fieldsets, ("Usage, limits and budgets", {"fields": PANELS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), *PANELS)

    @admin.display(description="ledger")
    def ledger_rows(self, owner: Tenant | ApiKey) -> str:
        url = reverse("admin:billing_usagerecord_changelist") + "?" + _owner_filter(owner, ledger=True)
        return format_html('<a href="{}">See its ledger rows</a>', url)

    @admin.display(description="usage this month")
    def month_usage(self, owner: Tenant | ApiKey) -> str:
        usage = usage_this_month(owner=owner, now=timezone.now())
        sums = usage.sums
        return (
            f"{sums.requests:,} requests · {sums.prompt_tokens:,} → {sums.completion_tokens:,} tokens · "
            f"{format_money(sums.cost)} ({usage.period}, UTC)"
        )

    @admin.display(description="rate limits")
    def limit_rows(self, owner: Tenant | ApiKey) -> str:
        context = {
            "limits": [(limit, _owner_label(limit.api_key)) for limit in rate_limits_of(owner=owner)],
            "listed_url": reverse("admin:billing_ratelimit_changelist") + "?" + _owner_filter(owner),
            "add_url": reverse("admin:billing_ratelimit_add") + "?" + _owner_query(owner),
        }
        return render_to_string("admin/billing/owner/rate_limits.html", context)

    @admin.display(description="budgets")
    def budget_progress(self, owner: Tenant | ApiKey) -> str:
        context = {
            "budgets": [_budget_line(progress) for progress in budgets_of(owner=owner, now=timezone.now())],
            "listed_url": reverse("admin:billing_budget_changelist") + "?" + _owner_filter(owner),
            "add_url": reverse("admin:billing_budget_add") + "?" + _owner_query(owner),
        }
        return render_to_string("admin/billing/owner/budgets.html", context)


admin.site.unregister(Tenant)
admin.site.unregister(ApiKey)


@admin.register(Tenant)
class BilledTenantAdmin(BillingPanels, TenantAdmin):
    pass


@admin.register(ApiKey)
class BilledApiKeyAdmin(BillingPanels, ApiKeyAdmin):
    pass
