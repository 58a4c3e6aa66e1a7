"""The management API for usage, rate limits and budgets (DRF).

Who sees what is decided in `tenants.apis`: operators see every tenant's
rows, tenant admins their tenants' only. Reads go to `billing.selectors`,
writes to `billing.services`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import Budget, BudgetAlert, RateLimit, UsageRecord
from billing.selectors import budgets_with_spend, usage_list, usage_totals
from billing.serializers import (
    BUDGET_FIELDS,
    LIMIT_FIELDS,
    AlertFilterSerializer,
    BudgetAlertSerializer,
    BudgetChangeSerializer,
    BudgetSerializer,
    OwnerFilterSerializer,
    RateLimitChangeSerializer,
    RateLimitSerializer,
    UsageFilterSerializer,
    UsageRecordSerializer,
    UsageTotalsSerializer,
)
from billing.services import budget_delete, budget_set, rate_limit_delete, rate_limit_set
from tenants.apis import TenantScopedViewSet

_OWNED = ("tenant", "api_key__tenant")
# Owners and models are fixed once created, so changes are partial (PATCH) and there is no PUT.
_NO_PUT = ["get", "post", "patch", "delete", "head", "options"]


def _changes(serializer: serializers.Serializer, fields: tuple[str, ...]) -> dict[str, Any]:
    """The values a PATCH leaves the object with: what was sent, else what it had."""
    return {name: serializer.validated_data.get(name, getattr(serializer.instance, name)) for name in fields}


def _by_owner_tenant(request: Request, queryset: QuerySet[Any]) -> QuerySet[Any]:
    filters = OwnerFilterSerializer(data=request.query_params)
    filters.is_valid(raise_exception=True)
    tenant_id = filters.validated_data.get("tenant")
    if tenant_id is None:
        return queryset
    return queryset.filter(Q(tenant_id=tenant_id) | Q(api_key__tenant_id=tenant_id))


@extend_schema_view(list=extend_schema(summary="List ledger rows, newest first", parameters=[UsageFilterSerializer]))
class UsageViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The usage ledger: one row per request served (or refused upstream)."""

    queryset = UsageRecord.objects.all()
    serializer_class = UsageRecordSerializer

    def filter_queryset(self, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        filters = UsageFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return usage_list(records=queryset, **filters.validated_data)

    @extend_schema(
        summary="Total requests, tokens and cost, overall and per model",
        parameters=[UsageFilterSerializer],
        responses=UsageTotalsSerializer,
    )
    @action(detail=False, pagination_class=None)
    def totals(self, request: Request) -> Response:
        totals = usage_totals(records=self.filter_queryset(self.get_queryset()))
        return Response(UsageTotalsSerializer(totals).data)


@extend_schema_view(
    list=extend_schema(summary="List rate limits", parameters=[OwnerFilterSerializer]),
    create=extend_schema(summary="Create a rate limit for a tenant or a key"),
    retrieve=extend_schema(summary="Show a rate limit"),
    partial_update=extend_schema(summary="Change a rate limit's limits"),
    destroy=extend_schema(summary="Delete a rate limit"),
)
class RateLimitViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """Requests and tokens per minute and requests in flight, for a tenant or a key; null is no limit."""

    queryset = RateLimit.objects.order_by("pk")
    tenant_lookups = _OWNED
    http_method_names = _NO_PUT

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return RateLimitChangeSerializer if self.action == "partial_update" else RateLimitSerializer

    def filter_queryset(self, queryset: QuerySet[RateLimit]) -> QuerySet[RateLimit]:
        return _by_owner_tenant(self.request, queryset) if self.action == "list" else queryset

    def perform_create(self, serializer: serializers.Serializer) -> None:
        serializer.instance = rate_limit_set(**serializer.validated_data)

    def perform_update(self, serializer: serializers.Serializer) -> None:
        limit = serializer.instance
        serializer.instance = rate_limit_set(
            tenant=limit.tenant, api_key=limit.api_key, model=limit.model, **_changes(serializer, LIMIT_FIELDS)
        )

    def perform_destroy(self, instance: RateLimit) -> None:
        rate_limit_delete(rate_limit=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List budgets with their spend in the current period", parameters=[OwnerFilterSerializer]
    ),
    create=extend_schema(summary="Create a budget for a tenant or a key"),
    retrieve=extend_schema(summary="Show a budget"),
    partial_update=extend_schema(summary="Change a budget's period, amount or soft limit"),
    destroy=extend_schema(summary="Delete a budget and its alerts"),
)
class BudgetViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """A spending limit in USD per period for a tenant or a key; one per owner."""

    queryset = Budget.objects.order_by("pk")
    tenant_lookups = _OWNED
    http_method_names = _NO_PUT

    def get_queryset(self) -> QuerySet[Budget]:
        return budgets_with_spend(budgets=super().get_queryset(), now=timezone.now())

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return BudgetChangeSerializer if self.action == "partial_update" else BudgetSerializer

    def filter_queryset(self, queryset: QuerySet[Budget]) -> QuerySet[Budget]:
        return _by_owner_tenant(self.request, queryset) if self.action == "list" else queryset

    def perform_create(self, serializer: serializers.Serializer) -> None:
        budget = budget_set(**serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=budget.pk)  # with its spend

    def perform_update(self, serializer: serializers.Serializer) -> None:
        budget = serializer.instance
        budget = budget_set(tenant=budget.tenant, api_key=budget.api_key, **_changes(serializer, BUDGET_FIELDS))
        serializer.instance = self.get_queryset().get(pk=budget.pk)

    def perform_destroy(self, instance: Budget) -> None:
        budget_delete(budget=instance)


@extend_schema_view(
    list=extend_schema(summary="List budget alerts, newest first", parameters=[AlertFilterSerializer]),
    retrieve=extend_schema(summary="Show a budget alert"),
)
class BudgetAlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Recorded when a budget's spend in a period reaches its soft limit, then its amount (each once a period)."""

    queryset = BudgetAlert.objects.order_by("-created_at", "-pk")
    serializer_class = BudgetAlertSerializer
    tenant_lookups = ("budget__tenant", "budget__api_key__tenant")

    def filter_queryset(self, queryset: QuerySet[BudgetAlert]) -> QuerySet[BudgetAlert]:
        if self.action != "list":
            return queryset
        filters = AlertFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "budget" in filters.validated_data:
            queryset = queryset.filter(budget_id=filters.validated_data["budget"])
        return queryset
