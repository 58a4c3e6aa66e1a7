"""The management API's bodies for usage, rate limits and budgets.

Money is a decimal string, never a float. A limit's or budget's owner (a
tenant or one of its keys) and a limit's model are chosen when it is created
and fixed after: to move one, delete it and create another.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from billing.models import USD, Budget, BudgetAlert, RateLimit, UsageRecord
from billing.periods import period_bounds
from billing.services import budget_check, rate_limit_check
from tenants.apis import ManagedKeyField, ManagedTenantField, is_operator
from tenants.serializers import RowIdFilter

LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "max_concurrent")
BUDGET_FIELDS = ("period", "amount", "soft_limit_percent")


# --- Usage ----------------------------------------------------------------------------------------


class UsageFilterSerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="Rows created at or after this time (ISO 8601).")
    end = serializers.DateTimeField(required=False, help_text="Rows created before this time (ISO 8601).")
    key = RowIdFilter(source="api_key_id", help_text="Only this API key's rows.")
    model = serializers.CharField(required=False, help_text="Only this public model id's rows.")
    tenant = RowIdFilter(source="tenant_id", help_text="Only this tenant's rows.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "start" in attrs and "end" in attrs and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "The end must be after the start."})
        return attrs


class UsageRecordSerializer(serializers.ModelSerializer):
    tenant = serializers.IntegerField(source="tenant_id", read_only=True, allow_null=True)
    api_key = serializers.IntegerField(source="api_key_id", read_only=True, allow_null=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "request_id",
            "client_request_id",
            "created_at",
            "tenant",
            "api_key",
            "key_prefix",
            "operation",
            "model",
            "provider",
            "upstream_model",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "tokens_estimated",
            "cost",
            "latency_ms",
            "first_token_ms",
            "status",
            "error_type",
            "streamed",
            "client_disconnected",
        ]
        read_only_fields = fields


class ModelTotalsSerializer(serializers.Serializer):
    model = serializers.CharField()
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(**USD, help_text="USD.")


class UsageTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(**USD, help_text="USD.")
    by_model = ModelTotalsSerializer(many=True)


# --- Rate limits ----------------------------------------------------------------------------------


class OwnerFilterSerializer(serializers.Serializer):
    tenant = RowIdFilter(help_text="Only this tenant's, its keys' included.")


class RateLimitSerializer(serializers.ModelSerializer):
    tenant = ManagedTenantField(required=False, allow_null=True, default=None)
    api_key = ManagedKeyField(required=False, allow_null=True, default=None)
    model = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="A public model id; empty for every model."
    )

    class Meta:
        model = RateLimit
        fields = ["id", "tenant", "api_key", "model", *LIMIT_FIELDS]
        # Uniqueness is checked in validate(), with a message that says what to do instead.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        operator = is_operator(self.context["request"].user)
        rate_limit_check(tenant=attrs["tenant"], api_key=attrs["api_key"], model=attrs["model"], operator=operator)
        return attrs


class RateLimitChangeSerializer(RateLimitSerializer):
    tenant = serializers.PrimaryKeyRelatedField(read_only=True)
    api_key = serializers.PrimaryKeyRelatedField(read_only=True)
    model = serializers.CharField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


# --- Budgets --------------------------------------------------------------------------------------


class BudgetSerializer(serializers.ModelSerializer):
    tenant = ManagedTenantField(required=False, allow_null=True, default=None)
    api_key = ManagedKeyField(required=False, allow_null=True, default=None)
    # Its range is checked by budget_check, with the console's message.
    soft_limit_percent = serializers.IntegerField(
        default=80, help_text="Record an alert when spend reaches this share (1 to 100 percent)."
    )
    current_period = serializers.SerializerMethodField(help_text="e.g. 2026-11, 2026-11-26, or 'all'.")
    spent = serializers.DecimalField(
        **USD, read_only=True, help_text="USD spent in the current period, as recorded in the ledger."
    )

    class Meta:
        model = Budget
        fields = ["id", "tenant", "api_key", *BUDGET_FIELDS, "current_period", "spent"]
        validators: list[Any] = []  # as for rate limits

    def get_current_period(self, budget: Budget) -> str:
        name, _start, _end = period_bounds(budget.period, timezone.now())
        return name

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        budget_check(tenant=attrs["tenant"], api_key=attrs["api_key"], soft_limit_percent=attrs["soft_limit_percent"])
        return attrs


class BudgetChangeSerializer(BudgetSerializer):
    tenant = serializers.PrimaryKeyRelatedField(read_only=True)
    api_key = serializers.PrimaryKeyRelatedField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        budget = self.instance
        percent = attrs.get("soft_limit_percent", budget.soft_limit_percent)
        budget_check(tenant=budget.tenant, api_key=budget.api_key, soft_limit_percent=percent, replacing=budget)
        return attrs


class AlertFilterSerializer(serializers.Serializer):
    budget = RowIdFilter(help_text="Only this budget's alerts.")


class BudgetAlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = BudgetAlert
        fields = ["id", "budget", "period", "level", "spent", "created_at"]
        read_only_fields = fields
