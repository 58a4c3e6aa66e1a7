"""What the usage reports answer (billing/reports.py): frozen values, no models, ready for a page or an export.

Money is Decimal USD, exact; shares, rates and fractions are floats from 0 to 1
(a budget's `used` may pass 1); latencies are milliseconds, None where nothing
was measured; days are UTC days. Ids are the rollups' own: 0 for "none" (a
request no deployment was tried for), and they may name rows deleted since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True)
class Totals:
    """Sums over some requests."""

    requests: int
    errors: int  # requests answered with a status of 400 or more, every error class
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # part of prompt_tokens: read from the provider's prompt cache
    cache_creation_tokens: int  # part of prompt_tokens: written to the provider's prompt cache
    reasoning_tokens: int  # part of completion_tokens
    cost: Decimal  # charged to the tenants
    provider_cost: Decimal  # charged by the providers (0 where their price is not known)


# --- A tenant's report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayModelUsage:
    """One day's use of one public model."""

    day: date
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class KeyUsage:
    """One API key's share of the period."""

    api_key_id: int  # 0: requests without a key
    name: str  # the key's name; "" when the key is gone
    prefix: str  # its public prefix, as the ledger recorded it
    totals: Totals


@dataclass(frozen=True)
class ErrorCount:
    error_class: str  # timeout, rate_limited, client, upstream or other (billing.models.UsageRollup)
    count: int
    share: float  # of all the period's requests


@dataclass(frozen=True)
class BudgetUse:
    """A budget and what its owner spent in the period running at the report's `now`."""

    budget_id: int
    tenant_id: int  # the owner's tenant (the key's, for a key's budget)
    api_key_id: int | None  # None: the tenant's own budget
    owner: str  # the tenant's or the key's name
    period: str  # monthly, daily or none (a lifetime total)
    period_name: str  # "2026-11", "2026-11-15" or "all"
    amount: Decimal  # the hard limit
    spent: Decimal
    used: float  # spent / amount; past 1 once the hard limit is passed
    soft_limit_percent: int
    soft_reached: bool  # spent is at least soft_limit_percent of amount
    hard_reached: bool  # spent is at least amount


@dataclass(frozen=True)
class RateLimitInfo:
    rate_limit_id: int
    api_key_id: int | None  # None: the tenant's own limit
    owner: str  # the tenant's or the key's name
    model: str  # the public model it is on; "" for all models
    requests_per_minute: int | None  # None: no limit
    tokens_per_minute: int | None
    max_concurrent: int | None


@dataclass(frozen=True)
class MonthStatement:
    """The calendar month (UTC) holding the report's `now`, so far."""

    month: str  # "2026-11"
    start: date  # its first day
    through: datetime  # the report's `now`
    totals: Totals
    projected_cost: Decimal  # the month's cost if it goes on at its pace so far
    budgets: tuple[BudgetUse, ...]  # the tenant's and its keys' budgets
    rate_limits: tuple[RateLimitInfo, ...]  # the tenant's and its keys' rate limits


@dataclass(frozen=True)
class TenantReport:
    tenant_id: int
    tenant_name: str  # "tenant #<id>" once the tenant is gone
    start: date
    end: date  # included
    totals: Totals  # over start to end
    days: tuple[DayModelUsage, ...]  # by day, then model; only days and models with requests
    keys: tuple[KeyUsage, ...]  # costliest first
    errors: tuple[ErrorCount, ...]  # the error classes seen, most frequent first
    statement: MonthStatement


# --- The operators' dashboard ---------------------------------------------------------------------


@dataclass(frozen=True)
class Performance:
    """How a provider or a public model served over the window."""

    name: str  # the provider's name or the public model's id
    requests: int
    errors: int
    success_rate: float | None  # (requests - errors) / requests; None without requests
    requests_per_minute: float  # over the whole window, quiet minutes included
    latency_p50_ms: float | None  # whole requests that succeeded
    latency_p95_ms: float | None
    ttft_p50_ms: float | None  # time to first token, of the requests that had one (streams)
    ttft_p95_ms: float | None


@dataclass(frozen=True)
class DeploymentShare:
    deployment_id: int
    deployment: str  # provider/upstream model
    provider: str
    requests: int
    share: float  # of the requests for the public model that reached a deployment


@dataclass(frozen=True)
class ModelShares:
    """Which deployments served a public model; requests refused before any was tried are left out."""

    model: str
    requests: int
    deployments: tuple[DeploymentShare, ...]  # most requests first


@dataclass(frozen=True)
class Spend:
    """What a tenant, provider or public model brought in and cost."""

    id: int | None  # the tenant's id; None for providers and models
    name: str
    requests: int
    cost: Decimal  # charged to tenants
    provider_cost: Decimal  # charged by providers, where known
    margin: Decimal | None  # cost - provider_cost over the requests whose provider cost is known; None: none is
    margin_coverage: float  # the share of `cost` that `margin` covers


@dataclass(frozen=True)
class Dashboard:
    window: str  # 1h, 24h, 7d or 30d
    start: datetime  # rounded out to the hour (1h, 24h) or the UTC day (7d, 30d)
    end: datetime  # the dashboard's `now`
    totals: Totals
    margin: Decimal | None  # as Spend.margin, over everything
    providers: tuple[Performance, ...]  # by name; only requests a deployment was tried for
    models: tuple[Performance, ...]  # by id; every request, refused ones included
    shares: tuple[ModelShares, ...]  # by model id
    spend_by_tenant: tuple[Spend, ...]  # costliest first
    spend_by_provider: tuple[Spend, ...]
    spend_by_model: tuple[Spend, ...]
    budgets: tuple[BudgetUse, ...]  # every budget, in its period running now


# --- The export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    """One group's totals. The grouping's fields are set; the others are None."""

    day: date | None
    model: str | None
    tenant_id: int | None  # with the key
    api_key_id: int | None
    key_prefix: str | None
    deployment_id: int | None
    deployment: str | None
    provider: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    cost: Decimal
    provider_cost: Decimal
