"""Prices, rate limits, budgets, the usage ledger and its rollups.

Money is Decimal in the database (USD with ten places, max_digits 20: a token
of a cheap model costs well under a micro-dollar) and integer nano-dollars in
Redis counters.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.histograms import bucket_columns
from billing.money import format_money

# The precision of every USD amount, for fields and for aggregates over them.
USD = {"max_digits": 20, "decimal_places": 10}


class PerMillion(models.Model):
    """USD per million tokens from `effective_from` on; ledger rows keep the cost computed when they were written."""

    effective_from = models.DateTimeField(default=timezone.now)
    input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(0)]
    )
    output_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(0)]
    )
    cached_input_per_million = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Leave empty to charge cached input tokens at the input price.",
    )

    class Meta:
        abstract = True


class Price(PerMillion):
    """What a tenant is charged for a public model, whichever deployment serves it."""

    # Named `route` from the days a public model was one route; it is the public model.
    route = models.ForeignKey("providers.PublicModel", on_delete=models.CASCADE, related_name="prices")

    class Meta:
        ordering = ["route", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["route", "effective_from"], name="one_price_per_route_instant")]

    def __str__(self) -> str:
        return f"{self.route} from {self.effective_from:%Y-%m-%d %H:%M}"


class DeploymentPrice(PerMillion):
    """What a provider costs for one deployment: with the tenant's price, the margin per model and provider."""

    deployment = models.ForeignKey("providers.ModelRoute", on_delete=models.CASCADE, related_name="costs")

    class Meta:
        ordering = ["deployment", "-effective_from"]
        verbose_name = "provider cost"
        constraints = [
            models.UniqueConstraint(fields=["deployment", "effective_from"], name="one_cost_per_deployment_instant")
        ]

    def __str__(self) -> str:
        return f"{self.deployment} from {self.effective_from:%Y-%m-%d %H:%M}"


def _one_owner() -> Q:
    return Q(tenant__isnull=False, api_key__isnull=True) | Q(tenant__isnull=True, api_key__isnull=False)


class RateLimit(models.Model):
    """Limits for a tenant or for one key, on all models or (with `model`) on one of them."""

    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="rate_limits"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="rate_limits"
    )
    model = models.CharField(
        max_length=200, blank=True, help_text="A public model id to override the limits for; empty for all models."
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight at once.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=_one_owner(), name="rate_limit_has_one_owner"),
            models.UniqueConstraint(fields=["tenant", "model"], name="one_rate_limit_per_tenant_model"),
            models.UniqueConstraint(fields=["api_key", "model"], name="one_rate_limit_per_key_model"),
        ]

    def __str__(self) -> str:
        owner = self.api_key or self.tenant
        return f"{owner}{f' on {self.model}' if self.model else ''}"


class Budget(models.Model):
    class Period(models.TextChoices):
        MONTHLY = "monthly", "monthly"
        DAILY = "daily", "daily"
        NONE = "none", "none (a lifetime total)"

    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)
    amount = models.DecimalField(
        max_digits=14, decimal_places=4, validators=[MinValueValidator(0)], help_text="USD per period: the hard limit."
    )
    soft_limit_percent = models.PositiveSmallIntegerField(
        default=80, help_text="An alert is recorded when spend in a period reaches this share of the amount."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=_one_owner(), name="budget_has_one_owner"),
            models.UniqueConstraint(fields=["tenant"], name="one_budget_per_tenant"),
            models.UniqueConstraint(fields=["api_key"], name="one_budget_per_key"),
        ]

    def __str__(self) -> str:
        return f"{self.api_key or self.tenant}: {format_money(self.amount)} {self.period}"


class BudgetAlert(models.Model):
    """A budget's spend crossed its soft limit (once per period) or its hard limit."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period = models.CharField(max_length=10, help_text="e.g. 2026-11, 2026-11-26, or 'all'.")
    level = models.CharField(max_length=4, choices=[("soft", "soft"), ("hard", "hard")])
    spent = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["budget", "period", "level"], name="one_alert_per_level")]

    def __str__(self) -> str:
        # The owner, not the whole budget: its amount may have changed since the alert.
        owner = self.budget.api_key or self.budget.tenant
        when = "over its lifetime" if self.period == "all" else f"in {self.period}"
        return f"{owner}: {self.level} limit reached {when}"


class UsageRecord(models.Model):
    """One served (or refused upstream) request. Written off the request path, exactly once per request id.

    On PostgreSQL the table is partitioned by month of `created_at` (docs/ledger-partitions.md), and a unique
    constraint there must hold the partition key: (request_id, created_at) is the database's, and the ledger's
    insert (billing/ledger.py) keeps a request id to one row across partitions.
    """

    request_id = models.CharField(max_length=64)
    client_request_id = models.CharField(max_length=200, blank=True, help_text="The x-request-id the client sent.")
    created_at = models.DateTimeField(db_index=True, help_text="When the request arrived.")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, on_delete=models.SET_NULL, db_constraint=False, related_name="+"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, on_delete=models.SET_NULL, db_constraint=False, related_name="+"
    )
    key_prefix = models.CharField(max_length=16, blank=True)
    operation = models.CharField(max_length=20, default="chat")
    model = models.CharField(max_length=200, help_text="The public model id the client asked for.")
    provider = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    # The deployment that served, as ids and names outlive the deployment row itself: no foreign key.
    # Defaults live in the database too, so a writer that predates these columns (a process of the
    # previous release during an upgrade, a spool it left behind) still inserts its rows.
    deployment_id = models.PositiveIntegerField(null=True, blank=True)
    deployment = models.CharField(
        max_length=200, blank=True, default="", db_default="", help_text="provider/upstream model that served."
    )
    attempts = models.PositiveSmallIntegerField(default=1, db_default=1, help_text="Upstream attempts this call made.")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cache_creation_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Prompt tokens the upstream wrote to its prompt cache."
    )
    tokens_estimated = models.BooleanField(default=False, help_text="Counted by Portico: the upstream reported none.")
    cost = models.DecimalField(
        max_digits=20, decimal_places=10, default=Decimal("0"), help_text="USD, at the prices in effect then."
    )
    provider_cost = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=Decimal("0"),
        db_default=Decimal("0"),
        help_text="USD the providers charge for this call.",
    )
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token (streams).")
    status = models.PositiveSmallIntegerField(help_text="The HTTP status the client got.")
    error_type = models.CharField(max_length=60, blank=True)
    streamed = models.BooleanField(default=False)
    client_disconnected = models.BooleanField(default=False)
    batch_id = models.CharField(
        max_length=64, null=True, blank=True, help_text="The batch (batch_…) this call was a line of."
    )
    queue_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Milliseconds the call waited in line or as a queued job; empty if it did not."
    )
    upstream_id = models.CharField(
        max_length=200, blank=True, db_default="", help_text="The id the upstream gave its answer (msg_…, chatcmpl-…)."
    )
    overhead_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Milliseconds spent in Portico, not waiting on the upstream."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_time"),
            models.Index(fields=["api_key", "created_at"], name="usage_key_time"),
            # Partial: live requests (no batch) add nothing to it.
            models.Index(fields=["batch_id"], name="usage_batch", condition=models.Q(batch_id__isnull=False)),
        ]
        constraints = [
            # Also the index that finds a request id: it leads the key, in every partition.
            models.UniqueConstraint(fields=["request_id", "created_at"], name="usage_request_once"),
        ]

    def __str__(self) -> str:
        return self.request_id


# What one rollup row sums over, its unique key: per tenant, key, model and deployment, or per deployment alone.
ROLLUP_GROUP = ["bucket", "tenant_id", "api_key_id", "model", "provider", "deployment_id"]
DEPLOYMENT_ROLLUP_GROUP = ["bucket", "model", "provider", "deployment_id"]
# Rollup sums: counts and tokens, USD with the ledger's ten places and room for many rows' worth.
_SUM: dict[str, Any] = {"default": 0}
_USD_SUM: dict[str, Any] = {"max_digits": 24, "decimal_places": 10, "default": Decimal("0")}
_SPEND_COLUMNS = ["tenant_id", "api_key_id", "requests", "cost", "provider_cost", "priced_cost"]


class RollupSums(models.Model):
    """The ledger's rows summed per time bucket (billing/rollups.py): what every rollup row holds.

    Errors are counted by class, from the status the client got:

        errors_timeout       408 or 504
        errors_rate_limited  429: Portico's limits and budgets, or the provider's
        errors_client        any other 4xx
        errors_upstream      any other 5xx the provider caused (error_type upstream_*, no_deployment_available)
        errors_other         any other status from 400 on: Portico's own failures

    Latencies count successful requests only (status under 400), times to
    first token every request whose first token arrived; both in the buckets
    of billing/histograms.py (`latency_b00`… and `ttft_b00`…, added below).
    `priced_cost` is the tenant price of the requests whose provider cost is
    known: not 0, or 0 from a provider cost in effect for the deployment (a
    self-hosted one). The margin is `priced_cost - provider_cost`.

    Ids are plain numbers, as on the ledger: they outlive the tenant, key or
    deployment they name, and 0 stands for none (a call no deployment was
    tried for), so that they can be part of the unique key.
    """

    bucket = models.DateTimeField(help_text="The start of the hour or UTC day.")
    model = models.CharField(max_length=200, help_text="The public model id.")
    provider = models.CharField(max_length=200, blank=True)
    deployment_id = models.BigIntegerField()
    deployment = models.CharField(max_length=200, blank=True, help_text="provider/upstream model that served.")
    requests = models.BigIntegerField(**_SUM)
    errors_client = models.BigIntegerField(**_SUM)
    errors_rate_limited = models.BigIntegerField(**_SUM)
    errors_timeout = models.BigIntegerField(**_SUM)
    errors_upstream = models.BigIntegerField(**_SUM)
    errors_other = models.BigIntegerField(**_SUM)
    prompt_tokens = models.BigIntegerField(**_SUM)
    completion_tokens = models.BigIntegerField(**_SUM)
    cached_tokens = models.BigIntegerField(**_SUM)
    reasoning_tokens = models.BigIntegerField(**_SUM)
    # Added after the others: the database's default lets a rollup run of the previous release still insert.
    cache_creation_tokens = models.BigIntegerField(**_SUM, db_default=0)
    cost = models.DecimalField(**_USD_SUM, help_text="USD charged to the tenant.")
    provider_cost = models.DecimalField(**_USD_SUM, help_text="USD the providers charge.")
    priced_cost = models.DecimalField(**_USD_SUM, help_text="`cost` of the requests whose provider cost is known.")
    latency_ms_sum = models.BigIntegerField(**_SUM)
    ttft_ms_sum = models.BigIntegerField(**_SUM)
    ttft_count = models.BigIntegerField(**_SUM)

    class Meta:
        abstract = True


# One column per bucket, declared from the bounds so that the SQL, the columns and the reports agree.
for _column in (*bucket_columns("latency"), *bucket_columns("ttft")):
    RollupSums.add_to_class(_column, models.BigIntegerField(**_SUM))


class UsageRollup(RollupSums):
    """Sums per tenant, key, public model and deployment: what tenants' reports and the export read."""

    tenant_id = models.BigIntegerField()
    api_key_id = models.BigIntegerField()
    key_prefix = models.CharField(max_length=16, blank=True)

    class Meta:
        abstract = True


class HourlyUsageRollup(UsageRollup):
    class Meta:
        constraints = [models.UniqueConstraint(fields=ROLLUP_GROUP, name="usage_hourly_one_row_per_group")]
        indexes = [
            # A tenant's report reads its own rows.
            models.Index(fields=["tenant_id", "bucket"], name="usage_hourly_tenant_time"),
            # Spend per tenant and budgets over a window, read from this index alone.
            models.Index(fields=["bucket", *_SPEND_COLUMNS], name="usage_hourly_spend"),
        ]


class DailyUsageRollup(UsageRollup):
    class Meta:
        constraints = [models.UniqueConstraint(fields=ROLLUP_GROUP, name="usage_daily_one_row_per_group")]
        indexes = [
            models.Index(fields=["tenant_id", "bucket"], name="usage_daily_tenant_time"),
            models.Index(fields=["bucket", *_SPEND_COLUMNS], name="usage_daily_spend"),
        ]


class DeploymentRollup(RollupSums):
    """Sums per public model and deployment, every tenant together: what the operators' dashboard reads.

    The same sums as UsageRollup's without the tenant and key, so a month of them is a few rows a day.
    """

    class Meta:
        abstract = True


class HourlyDeploymentRollup(DeploymentRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=DEPLOYMENT_ROLLUP_GROUP, name="deployment_hourly_one_row_per_group")
        ]


class DailyDeploymentRollup(DeploymentRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(fields=DEPLOYMENT_ROLLUP_GROUP, name="deployment_daily_one_row_per_group")
        ]


class UsageRollupCursor(models.Model):
    """How far the rollups have read the ledger: every row with an id up to `last_id` is counted in them."""

    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ledger rows up to #{self.last_id}"
