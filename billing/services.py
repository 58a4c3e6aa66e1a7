"""Writes on prices, rate limits and budgets, and the rules a new or changed one must keep.

A rate limit is set per owner (a tenant or one key) and model, a budget per
owner: setting one again replaces it rather than adding a second. Saving
through the ORM lets the change signals reload every process's snapshot.

`rate_limit_check` and `budget_check` are the rules a person's edit must keep,
shared by the console's forms and the management API's serializers so both
refuse the same things in the same words. They raise Django's ValidationError,
which a ModelForm and DRF both turn into field errors.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from billing.models import Budget, DeploymentPrice, Price, RateLimit
from providers.models import ModelRoute, PublicModel
from tenants.models import ApiKey, Tenant
from tenants.selectors import public_models_for

ONE_OWNER = "Give either a tenant or an API key, not both and not neither."
# Codes of the errors about a whole limit or budget, for a form that says them at the field to change.
NOT_ONE_OWNER = "not_one_owner"
DUPLICATE = "duplicate"
SOFT_LIMIT_PERCENTS = range(1, 101)


def _check_one_owner(tenant: Tenant | None, api_key: ApiKey | None) -> None:
    if (tenant is None) == (api_key is None):
        raise ValueError(ONE_OWNER)


def _owner_label(api_key: ApiKey | None) -> str:
    return "This key" if api_key is not None else "This tenant"


def _model_problems(*, tenant: Tenant, model: str, operator: bool) -> list[str]:
    """Why `tenant` may not have a limit on `model`. Only operators learn that a model exists but is not the
    tenant's: to a tenant admin, a model kept for other tenants reads as one that does not exist."""
    _usable, unknown, forbidden = public_models_for(tenant=tenant, public_ids=[model])
    if forbidden and operator:
        return [f"The tenant may not use: {model}."]
    return [f"Unknown model: {model}."] if unknown or forbidden else []


def rate_limit_check(
    *,
    tenant: Tenant | None,
    api_key: ApiKey | None,
    model: str,
    operator: bool,
    replacing: RateLimit | None = None,
) -> None:
    """Refuse a rate limit without exactly one owner, on a model its tenant cannot call, or that would be a second
    one for the same owner and model (`replacing` is the limit being edited, which may keep its own)."""
    if (tenant is None) == (api_key is None):
        raise ValidationError(ONE_OWNER, code=NOT_ONE_OWNER)
    owner_tenant = tenant or api_key.tenant  # type: ignore[union-attr]
    if model and (problems := _model_problems(tenant=owner_tenant, model=model, operator=operator)):
        raise ValidationError({"model": problems})
    others = RateLimit.objects.filter(tenant=tenant, api_key=api_key, model=model)
    if replacing is not None:
        others = others.exclude(pk=replacing.pk)
    if others.exists():
        scope = f"on {model}" if model else "on all models"
        raise ValidationError(
            f"{_owner_label(api_key)} already has a rate limit {scope}: change that one instead.", code=DUPLICATE
        )


def budget_check(
    *,
    tenant: Tenant | None,
    api_key: ApiKey | None,
    soft_limit_percent: int,
    replacing: Budget | None = None,
) -> None:
    """Refuse a budget without exactly one owner, with a soft limit outside 1-100 %, or that would be its owner's
    second (`replacing` is the budget being edited)."""
    if (tenant is None) == (api_key is None):
        raise ValidationError(ONE_OWNER, code=NOT_ONE_OWNER)
    if soft_limit_percent not in SOFT_LIMIT_PERCENTS:
        raise ValidationError({"soft_limit_percent": "Give a share of the amount from 1 to 100 (percent)."})
    others = Budget.objects.filter(tenant=tenant, api_key=api_key)
    if replacing is not None:
        others = others.exclude(pk=replacing.pk)
    if others.exists():
        raise ValidationError(f"{_owner_label(api_key)} already has a budget: change that one instead.", code=DUPLICATE)


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
