"""Reads for the portal's pages, every one scoped to a single tenant.

Totals, budgets' spend and limits come from `billing.selectors` (computed in
the database); this module narrows them to the tenant and shapes them for a
page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet

from billing.models import RateLimit, UsageRecord
from billing.selectors import (
    BudgetProgress,
    PeriodUsage,
    budgets_of,
    rate_limits_of,
    usage_list,
    usage_this_month,
)
from providers.models import PublicModel
from tenants.models import ApiKey, Tenant, TenantMembership
from tenants.selectors import public_models_usable_by


def memberships_of(*, user: Any) -> QuerySet[TenantMembership]:
    return TenantMembership.objects.filter(user=user).select_related("tenant").order_by("tenant__name", "tenant__pk")


def membership_of(*, user: Any, slug: str) -> TenantMembership | None:
    """The user's membership of the tenant with this slug; None for a tenant they are not in, or none at all."""
    return memberships_of(user=user).filter(tenant__slug=slug).first()


def members_of(*, tenant: Tenant) -> QuerySet[TenantMembership]:
    return TenantMembership.objects.filter(tenant=tenant).select_related("user").order_by("role", "user__username")


def keys_of(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).prefetch_related("allowed_models").order_by("-created_at", "-pk")


def models_usable_by(*, tenant: Tenant) -> QuerySet[PublicModel]:
    return public_models_usable_by(tenants=[tenant]).order_by("public_id")


@dataclass(frozen=True)
class BudgetLine:
    progress: BudgetProgress

    @property
    def remaining(self) -> Decimal:
        return max(self.progress.budget.amount - self.progress.spent, Decimal(0))

    @property
    def filled(self) -> int:
        """The progress bar's fill: the share spent, capped at a full bar."""
        return min(self.progress.percent, 100)


@dataclass(frozen=True)
class Overview:
    month: PeriodUsage
    budgets: list[BudgetLine]
    limits: list[RateLimit]


def tenant_overview(*, tenant: Tenant, now: datetime) -> Overview:
    """Month-to-date usage, and the budgets (with their spend) and rate limits of the tenant and its keys."""
    return Overview(
        month=usage_this_month(owner=tenant, now=now),
        budgets=[BudgetLine(progress) for progress in budgets_of(owner=tenant, now=now)],
        limits=rate_limits_of(owner=tenant),
    )


def request_log(
    *, tenant: Tenant, request_id: str = "", model: str = "", key_prefix: str = "", status: int | None = None
) -> QuerySet[UsageRecord]:
    """The tenant's ledger rows, newest first, narrowed by what the search form was given.

    A request id matches Portico's own id or the x-request-id the client sent; a key prefix matches
    keys whose prefix starts with it; a model, any model id containing it.
    """
    rows = usage_list(tenant_id=tenant.pk)
    if request_id:
        rows = rows.filter(Q(request_id=request_id) | Q(client_request_id=request_id))
    if model:
        rows = rows.filter(model__icontains=model)
    if key_prefix:
        rows = rows.filter(key_prefix__startswith=key_prefix)
    if status is not None:
        rows = rows.filter(status=status)
    return rows
