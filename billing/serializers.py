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
from tenants.apis import ManagedKeyField, ManagedTenantField, usable_models

LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "max_concurrent")
BUDGET_FIELDS = ("period", "amount", "soft_limit_percent")


def _owner_label(owner: dict[str, Any]) -> str:
    return "This key" if owner["api_key"] is not None else "This tenant"


def _check_one_owner(attrs: dict[str, Any]) -> None:
    if (attrs.get("tenant") is None) == (attrs.get("api_key") is None):
        raise serializers.ValidationError("Give either a tenant or an API key, not both and not neither.")


# --- Usage ----------------------------------------------------------------------------------------


class UsageFilterSerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="Rows created at or after this time (ISO 8601).")
    end = serializers.DateTimeField(required=False, help_text="Rows created before this time (ISO 8601).")
    key = serializers.IntegerField(required=False, source="api_key_id", help_text="Only this API key's rows.")
    model = serializers.CharField(required=False, help_text="Only this public model id's rows.")
    tenant = serializers.IntegerField(required=False, source="tenant_id", help_text="Only this tenant's rows.")

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
    tenant = serializers.IntegerField(required=False, help_text="Only this tenant's, its keys' included.")


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
        _check_one_owner(attrs)
        owner = {"tenant": attrs["tenant"], "api_key": attrs["api_key"]}
        if attrs["model"]:
            # A limit on a model the tenant may not use reads, to a tenant admin, as one on a model that does not exist.
            tenant = attrs["tenant"] or attrs["api_key"].tenant
            try:
                usable_models(user=self.context["request"].user, tenant=tenant, public_ids=[attrs["model"]])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"model": exc.detail}) from None
        if RateLimit.objects.filter(**owner, model=attrs["model"]).exists():
            scope = f"on {attrs['model']}" if attrs["model"] else "on all models"
            raise serializers.ValidationError(
                f"{_owner_label(owner)} already has a rate limit {scope}: change that one instead."
            )
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
    soft_limit_percent = serializers.IntegerField(
        min_value=1, max_value=100, default=80, help_text="Record an alert when spend reaches this share."
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
        _check_one_owner(attrs)
        owner = {"tenant": attrs["tenant"], "api_key": attrs["api_key"]}
        if Budget.objects.filter(**owner).exists():
            raise serializers.ValidationError(f"{_owner_label(owner)} already has a budget: change that one instead.")
        return attrs


class BudgetChangeSerializer(BudgetSerializer):
    tenant = serializers.PrimaryKeyRelatedField(read_only=True)
    api_key = serializers.PrimaryKeyRelatedField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


class AlertFilterSerializer(serializers.Serializer):
    budget = serializers.IntegerField(required=False, help_text="Only this budget's alerts.")


class BudgetAlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = BudgetAlert
        fields = ["id", "budget", "period", "level", "spent", "created_at"]
        read_only_fields = fields
