"""Writes on prices, rate limits and budgets.

A rate limit is set per owner (a tenant or one key) and model, a budget per
owner: setting one again replaces it rather than adding a second. Saving
through the ORM lets the change signals reload every process's snapshot.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.models import Budget, DeploymentPrice, Price, RateLimit
from providers.models import ModelRoute, PublicModel
from tenants.models import ApiKey, Tenant


def _check_one_owner(tenant: Tenant | None, api_key: ApiKey | None) -> None:
    if (tenant is None) == (api_key is None):
        raise ValueError("Give either a tenant or an API key, not both and not neither.")


def price_add(
    *,
    model: PublicModel,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_per_million: Decimal | None = None,
    effective_from: datetime | None = None,
) -> Price:
    """A new tenant price for a public model from `effective_from` (now by default); earlier ones stay as history."""
    return Price.objects.create(
        route=model,
        effective_from=effective_from or timezone.now(),
        input_per_million=input_per_million,
        output_per_million=output_per_million,
        cached_input_per_million=cached_input_per_million,
    )


def deployment_price_add(
    *,
    deployment: ModelRoute,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_per_million: Decimal | None = None,
    effective_from: datetime | None = None,
) -> DeploymentPrice:
    """What a deployment's provider charges from `effective_from` (now by default); earlier costs stay as history."""
    return DeploymentPrice.objects.create(
        deployment=deployment,
        effective_from=effective_from or timezone.now(),
        input_per_million=input_per_million,
        output_per_million=output_per_million,
        cached_input_per_million=cached_input_per_million,
    )


@transaction.atomic
def rate_limit_set(
    *,
    tenant: Tenant | None = None,
    api_key: ApiKey | None = None,
    model: str = "",
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    max_concurrent: int | None = None,
) -> RateLimit:
    """Set the limits of a tenant or a key, on one model or (with `model` empty) on all; None is no limit."""
    _check_one_owner(tenant, api_key)
    rate_limit, _created = RateLimit.objects.update_or_create(
        tenant=tenant,
        api_key=api_key,
        model=model,
        defaults={
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "max_concurrent": max_concurrent,
        },
    )
    return rate_limit


def rate_limit_delete(*, rate_limit: RateLimit) -> None:
    rate_limit.delete()


@transaction.atomic
def budget_set(
    *,
    tenant: Tenant | None = None,
    api_key: ApiKey | None = None,
    amount: Decimal,
    period: str = Budget.Period.MONTHLY,
    soft_limit_percent: int = 80,
) -> Budget:
    """Set the budget of a tenant or a key. Alerts already recorded stay: each is for a period that happened."""
    _check_one_owner(tenant, api_key)
    if period not in Budget.Period.values:
        raise ValueError(f"Unknown budget period {period!r}.")
    budget, _created = Budget.objects.update_or_create(
        tenant=tenant,
        api_key=api_key,
        defaults={"amount": amount, "period": period, "soft_limit_percent": soft_limit_percent},
    )
    return budget


def budget_delete(*, budget: Budget) -> None:
    budget.delete()
