"""Usage reports, read from the rollups alone (billing/rollups.py), never from the raw ledger.

    tenant_report(tenant_id=, start=, end=)        one tenant: days per model, keys, errors, the month so far
    dashboard(window=)                              operators: performance, deployments' shares, spend, budgets
    report_rows(tenant_id=, start=, end=, group_by=) grouped totals for the export, read in chunks

Each answers frozen dataclasses whose fields are documented where they are
declared. Money is Decimal USD, exact; shares and rates are floats from 0 to 1;
times are milliseconds; days are UTC days. A figure trails the ledger by at
most the rollup interval (PORTICO_ROLLUP_INTERVAL) plus the ledger's own
flush, budgets' spend included: the limiter, not this, enforces budgets.

Every query groups in the database; Python only adds up a few hundred
grouped rows (performance per provider and per model come from one query
grouped by model and deployment).
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from typing import Any

from django.db.models import F, Max, Q, QuerySet, Sum
from django.utils import timezone

from billing.budget_spend import budget_uses, owner_name
from billing.histograms import bucket_columns, percentile
from billing.models import (
    Budget,
    DailyDeploymentRollup,
    DailyUsageRollup,
    DeploymentRollup,
    HourlyDeploymentRollup,
    HourlyUsageRollup,
    RateLimit,
    UsageRollup,
)
from billing.periods import period_bounds
from billing.report_values import (
    Dashboard,
    DayModelUsage,
    DeploymentShare,
    ErrorCount,
    KeyUsage,
    ModelShares,
    MonthStatement,
    Performance,
    RateLimitInfo,
    ReportRow,
    Spend,
    TenantReport,
    Totals,
)
from tenants.models import ApiKey, Tenant

# The dashboard's windows, rounded out to whole buckets: hours for the short ones, UTC days for the long ones.
WINDOWS: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "hour"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "day"),
    "30d": (timedelta(days=30), "day"),
}
_ROLLUPS: dict[str, tuple[type[DeploymentRollup], type[UsageRollup]]] = {
    "hour": (HourlyDeploymentRollup, HourlyUsageRollup),
    "day": (DailyDeploymentRollup, DailyUsageRollup),
}
# report_rows' groupings and the rollup columns each groups by.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "day": ("bucket",),
    "model": ("model",),
    "key": ("tenant_id", "api_key_id"),
    "deployment": ("deployment_id",),
    "provider": ("provider",),
}
REPORT_CHUNK = 2000
_TICK = timedelta(microseconds=1)
_LEDGER_PLACES = Decimal("1e-10")

ERROR_CLASSES = ("timeout", "rate_limited", "client", "upstream", "other")
_ERRORS = tuple(f"errors_{name}" for name in ERROR_CLASSES)
_TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")
_MONEY = ("cost", "provider_cost", "priced_cost")
_LATENCY, _TTFT = bucket_columns("latency"), bucket_columns("ttft")
_TOTALS = ("requests", *_ERRORS, *_TOKENS, *_MONEY)
_PERFORMANCE = (*_TOTALS, *_LATENCY, *_TTFT)
_SPEND = ("requests", "cost", "provider_cost", "priced_cost")


def _sums(columns: Iterable[str]) -> dict[str, Sum]:
    return {name: Sum(name) for name in columns}


class _Tally:
    """Rollup sums added up from grouped rows (a missing sum counts as 0)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = defaultdict(int)

    def add(self, row: Mapping[str, Any], columns: Iterable[str]) -> None:
        for name in columns:
            self.values[name] += row.get(name) or 0

    def totals(self) -> Totals:
        get = self.values.__getitem__
        return Totals(
            requests=get("requests"),
            errors=sum(get(name) for name in _ERRORS),
            **{name: get(name) for name in _TOKENS},
            cost=Decimal(get("cost")),
            provider_cost=Decimal(get("provider_cost")),
        )

    def margin(self) -> Decimal | None:
        """The tenants' price less the providers' cost, over the requests whose provider cost is known (a known
        cost may be 0: a self-hosted deployment); None when those add up to nothing either side, or there are none.
        """
        provider_cost, priced = Decimal(self.values["provider_cost"]), Decimal(self.values["priced_cost"])
        return priced - provider_cost if provider_cost or priced else None

    def performance(self, name: str, minutes: float) -> Performance:
        totals = self.totals()
        latency = [self.values[column] for column in _LATENCY]
        ttft = [self.values[column] for column in _TTFT]
        return Performance(
            name=name,
            requests=totals.requests,
            errors=totals.errors,
            success_rate=(totals.requests - totals.errors) / totals.requests if totals.requests else None,
            requests_per_minute=totals.requests / minutes if minutes > 0 else 0.0,
            latency_p50_ms=percentile(latency, 0.5),
            latency_p95_ms=percentile(latency, 0.95),
            ttft_p50_ms=percentile(ttft, 0.5),
            ttft_p95_ms=percentile(ttft, 0.95),
        )

    def spend(self, name: str, tenant_id: int | None = None) -> Spend:
        cost = Decimal(self.values["cost"])
        priced = Decimal(self.values["priced_cost"])
        return Spend(
            id=tenant_id,
            name=name,
            requests=self.values["requests"],
            cost=cost,
            provider_cost=Decimal(self.values["provider_cost"]),
            margin=self.margin(),
            margin_coverage=float(priced / cost) if cost else 0.0,
        )


def _day_start(day: date) -> datetime:
    """A daily rollup's bucket. Ranges end on the last day's bucket, not before the next day's, which for the
    last date Python has would not exist."""
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- A tenant's report ----------------------------------------------------------------------------


def tenant_report(*, tenant_id: int, start: date, end: date, now: datetime | None = None) -> TenantReport:
    """One tenant's usage from `start` to `end` (UTC days, both included), and its month so far (`now`'s)."""
    if end < start:
        raise ValueError("the end of a report comes on or after its start")
    now = (now or timezone.now()).astimezone(UTC)
    rows = DailyUsageRollup.objects.filter(
        tenant_id=tenant_id, bucket__gte=_day_start(start), bucket__lte=_day_start(end)
    ).order_by()
    per_day: Iterable[Mapping[str, Any]] = (
        rows.values("bucket", "model").annotate(**_sums(("requests", *_TOKENS, "cost"))).order_by("bucket", "model")
    )
    days = tuple(
        DayModelUsage(
            day=row["bucket"].date(),
            model=row["model"],
            **{name: row[name] for name in ("requests", *_TOKENS)},
            cost=row["cost"],
        )
        for row in per_day
    )
    overall, keys = _Tally(), []
    names = dict(ApiKey.objects.filter(tenant_id=tenant_id).values_list("pk", "name"))
    for row in rows.values("api_key_id").annotate(prefix=Max("key_prefix"), **_sums(_TOTALS)):
        tally = _Tally()
        tally.add(row, _TOTALS)
        overall.add(row, _TOTALS)
        key_id = row["api_key_id"]
        keys.append(
            KeyUsage(api_key_id=key_id, name=names.get(key_id, ""), prefix=row["prefix"], totals=tally.totals())
        )
    keys.sort(key=lambda key: (-key.totals.cost, -key.totals.requests, key.api_key_id))
    totals = overall.totals()
    errors = sorted(
        (
            ErrorCount(error_class=name, count=count, share=count / totals.requests)
            for name in ERROR_CLASSES
            if (count := overall.values[f"errors_{name}"])
        ),
        key=lambda error: (-error.count, error.error_class),
    )
    tenant_name = Tenant.objects.filter(pk=tenant_id).values_list("name", flat=True).first()
    return TenantReport(
        tenant_id=tenant_id,
        tenant_name=tenant_name or f"tenant #{tenant_id}",
        start=start,
        end=end,
        totals=totals,
        days=days,
        keys=tuple(keys),
        errors=tuple(errors),
        statement=_month_statement(tenant_id, now),
    )


def _month_statement(tenant_id: int, now: datetime) -> MonthStatement:
    month, month_start, month_end = period_bounds(Budget.Period.MONTHLY, now)
    assert month_start is not None
    assert month_end is not None
    tally = _Tally()
    tally.add(
        DailyUsageRollup.objects.filter(tenant_id=tenant_id, bucket__gte=month_start, bucket__lte=now).aggregate(
            **_sums(_TOTALS)
        ),
        _TOTALS,
    )
    totals = tally.totals()
    owned = Q(tenant_id=tenant_id) | Q(api_key__tenant_id=tenant_id)
    budgets = Budget.objects.filter(owned).select_related("tenant", "api_key").order_by("pk")
    limits = RateLimit.objects.filter(owned).select_related("tenant", "api_key").order_by("pk")
    return MonthStatement(
        month=month,
        start=month_start.date(),
        through=now,
        totals=totals,
        projected_cost=_projected(totals.cost, month_start, month_end, now),
        budgets=budget_uses(budgets=budgets, now=now),
        rate_limits=tuple(
            RateLimitInfo(
                rate_limit_id=limit.pk,
                api_key_id=limit.api_key_id,
                owner=owner_name(limit),
                model=limit.model,
                requests_per_minute=limit.requests_per_minute,
                tokens_per_minute=limit.tokens_per_minute,
                max_concurrent=limit.max_concurrent,
            )
            for limit in limits
        ),
    )


def _projected(cost: Decimal, start: datetime, end: datetime, now: datetime) -> Decimal:
    """The period's cost if it goes on at the pace of `cost` from `start` to `now`, to the ledger's ten places."""
    passed, whole = (now - start) // _TICK, (end - start) // _TICK
    if passed <= 0:
        return cost
    return (cost * whole / passed).quantize(_LEDGER_PLACES)


# --- The operators' dashboard ---------------------------------------------------------------------


def dashboard(*, window: str, now: datetime | None = None) -> Dashboard:
    """Every tenant's traffic over `window` ("1h", "24h", "7d" or "30d", up to `now`)."""
    if window not in WINDOWS:
        raise ValueError(f"the window is one of {', '.join(WINDOWS)}, not {window!r}")
    now = (now or timezone.now()).astimezone(UTC)
    length, span = WINDOWS[window]
    start = (now - length).replace(minute=0, second=0, microsecond=0)
    if span == "day":
        start = start.replace(hour=0)
    minutes = (now - start).total_seconds() / 60
    deployment_rollup, key_rollup = _ROLLUPS[span]
    in_window = {"bucket__gte": start, "bucket__lte": now}

    overall = _Tally()
    providers: defaultdict[str, _Tally] = defaultdict(_Tally)
    models: defaultdict[str, _Tally] = defaultdict(_Tally)
    shares: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    grouped: Iterable[Mapping[str, Any]] = (
        deployment_rollup._default_manager.filter(**in_window)
        .values("model", "provider", "deployment_id")
        .annotate(deployment_name=Max("deployment"), **_sums(_PERFORMANCE))
        .order_by()
    )
    for row in grouped:
        overall.add(row, _TOTALS)
        models[row["model"]].add(row, _PERFORMANCE)
        # A call refused before any deployment was tried says nothing of a provider.
        if row["deployment_id"]:
            providers[row["provider"]].add(row, _PERFORMANCE)
            shares[row["model"]].append(row)

    by_tenant: dict[int, _Tally] = defaultdict(_Tally)
    spend: Iterable[Mapping[str, Any]] = (
        key_rollup._default_manager.filter(**in_window).values("tenant_id").annotate(**_sums(_SPEND)).order_by()
    )
    for row in spend:
        by_tenant[row["tenant_id"]].add(row, _SPEND)
    names = dict(Tenant.objects.filter(pk__in=list(by_tenant)).values_list("pk", "name"))

    return Dashboard(
        window=window,
        start=start,
        end=now,
        totals=overall.totals(),
        margin=overall.margin(),
        providers=tuple(tally.performance(name, minutes) for name, tally in sorted(providers.items())),
        models=tuple(tally.performance(name, minutes) for name, tally in sorted(models.items())),
        shares=tuple(_model_shares(model, served) for model, served in sorted(shares.items())),
        spend_by_tenant=_by_cost(
            tally.spend(names.get(tenant_id, f"tenant #{tenant_id}"), tenant_id)
            for tenant_id, tally in by_tenant.items()
        ),
        spend_by_provider=_by_cost(tally.spend(name) for name, tally in providers.items()),
        spend_by_model=_by_cost(tally.spend(name) for name, tally in models.items()),
        budgets=budget_uses(budgets=Budget.objects.select_related("tenant", "api_key").order_by("pk"), now=now),
    )


def _by_cost(lines: Iterable[Spend]) -> tuple[Spend, ...]:
    return tuple(sorted(lines, key=lambda line: (-line.cost, line.name)))


def _model_shares(model: str, served: Sequence[Mapping[str, Any]]) -> ModelShares:
    total = sum(row["requests"] for row in served)
    deployments = [
        DeploymentShare(
            deployment_id=row["deployment_id"],
            deployment=row["deployment_name"],
            provider=row["provider"],
            requests=row["requests"],
            share=row["requests"] / total if total else 0.0,
        )
        for row in served
    ]
    deployments.sort(key=lambda share: (-share.requests, share.deployment_id))
    return ModelShares(model=model, requests=total, deployments=tuple(deployments))


# --- The export -----------------------------------------------------------------------------------


def report_rows(
    *,
    tenant_id: int | None,
    start: date,
    end: date,
    group_by: Sequence[str],
    tenant_ids: Collection[int] | None = None,
) -> Iterator[ReportRow]:
    """Totals per group of `group_by` (GROUPINGS' names) over UTC days `start` to `end`, both included.

    `tenant_id` narrows to one tenant, `tenant_ids` to those a caller may see (None: every one). Rows come
    ordered by their group, read from the database REPORT_CHUNK at a time: a year of a large tenant is
    never held whole.
    """
    unknown = [name for name in group_by if name not in GROUPINGS]
    if unknown:
        raise ValueError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPINGS)}")
    if end < start:
        raise ValueError("the end of a report comes on or after its start")
    columns = [column for name in dict.fromkeys(group_by) for column in GROUPINGS[name]]
    rows = _daily(start, end, tenant_id=tenant_id, tenant_ids=tenant_ids)
    labels: dict[str, Max] = {}
    if "key" in group_by:
        labels["prefix"] = Max("key_prefix")
    if "deployment" in group_by:
        labels["deployment_name"] = Max("deployment")
    grouped = (
        rows.values(*columns)
        .annotate(**labels, **_sums(("requests", *_TOKENS, "cost", "provider_cost")))
        .annotate(errors=Sum(reduce(operator.add, (F(name) for name in _ERRORS))))
        .order_by(*columns)
    )
    return _report_rows(grouped)


def _report_rows(grouped: QuerySet[DailyUsageRollup, dict[str, Any]]) -> Iterator[ReportRow]:
    for row in grouped.iterator(chunk_size=REPORT_CHUNK):
        yield ReportRow(
            day=row["bucket"].date() if "bucket" in row else None,
            model=row.get("model"),
            tenant_id=row.get("tenant_id"),
            api_key_id=row.get("api_key_id"),
            key_prefix=row.get("prefix"),
            deployment_id=row.get("deployment_id"),
            deployment=row.get("deployment_name"),
            provider=row.get("provider"),
            requests=row["requests"],
            errors=row["errors"],
            **{name: row[name] for name in _TOKENS},
            cost=row["cost"],
            provider_cost=row["provider_cost"],
        )


def _daily(
    start: date, end: date, *, tenant_id: int | None, tenant_ids: Collection[int] | None
) -> QuerySet[DailyUsageRollup]:
    rows = DailyUsageRollup.objects.filter(bucket__gte=_day_start(start), bucket__lte=_day_start(end)).order_by()
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    return rows
