"""The management API for usage, prices, rate limits and budgets (DRF).

Who sees what is decided in `tenants.apis`: operators see every tenant's
rows, tenant admins their tenants' only. Reads go to `billing.selectors`,
writes to `billing.services` (and `billing.prices`, which withdraws a price
that has not started). Prices are a history: created, never changed; tenant
admins read the prices of the models their tenants may use, and providers'
costs are for operators only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import Budget, BudgetAlert, DeploymentPrice, Price, RateLimit, UsageRecord
from billing.price_serializers import (
    DeploymentPriceFilterSerializer,
    DeploymentPriceSerializer,
    PriceFilterSerializer,
    PriceSerializer,
)
from billing.prices import PriceInEffect, deployment_price_withdraw, price_withdraw
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
from billing.services import (
    budget_delete,
    budget_set,
    deployment_price_add,
    price_add,
    rate_limit_delete,
    rate_limit_set,
)
from tenants.apis import IsOperatorOrReadingTenantAdmin, TenantScopedViewSet, is_operator, tenants_managed_by
from tenants.selectors import public_models_usable_by

_OWNED = ("tenant", "api_key__tenant")
# Owners and models are fixed once created, so changes are partial (PATCH) and there is no PUT.
_NO_PUT = ["get", "post", "patch", "delete", "head", "options"]
# A price is never changed: added, or withdrawn before it starts.
_ADD_OR_WITHDRAW = ["get", "post", "delete", "head", "options"]


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


class _PriceHistoryViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    http_method_names = _ADD_OR_WITHDRAW

    def perform_destroy(self, instance: Price | DeploymentPrice) -> None:
        try:
            self.withdraw(instance)
        except PriceInEffect as exc:
            raise serializers.ValidationError(str(exc)) from None

    def withdraw(self, instance: Any) -> None:
        raise NotImplementedError


@extend_schema_view(
    list=extend_schema(summary="List tenant prices, newest first per model", parameters=[PriceFilterSerializer]),
    create=extend_schema(summary="Add a tenant price for a public model, from now or a later time"),
    retrieve=extend_schema(summary="Show a tenant price"),
    destroy=extend_schema(summary="Withdraw a tenant price that has not started yet"),
)
class PriceViewSet(_PriceHistoryViewSet):
    """What tenants pay per million tokens of a public model, each row from its `effective_from` on."""

    queryset = Price.objects.select_related("route").order_by("route__public_id", "-effective_from", "-pk")
    serializer_class = PriceSerializer
    permission_classes = [IsOperatorOrReadingTenantAdmin]

    def get_queryset(self) -> QuerySet[Price]:
        queryset = super().get_queryset()
        user = self.request.user
        if is_operator(user):
            return queryset
        # A model the tenant may not use reads as one that does not exist, and so do its prices.
        return queryset.filter(route__in=public_models_usable_by(tenants=tenants_managed_by(user)).values("pk"))

    def filter_queryset(self, queryset: QuerySet[Price]) -> QuerySet[Price]:
        if self.action != "list":
            return queryset
        filters = PriceFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "model" in filters.validated_data:
            queryset = queryset.filter(route__public_id=filters.validated_data["model"])
        return queryset

    def perform_create(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = price_add(model=data.pop("route"), **data)

    def withdraw(self, instance: Price) -> None:
        price_withdraw(price=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List what providers charge per deployment, newest first", parameters=[DeploymentPriceFilterSerializer]
    ),
    create=extend_schema(summary="Add a provider cost for a deployment, from now or a later time"),
    retrieve=extend_schema(summary="Show a provider cost"),
    destroy=extend_schema(summary="Withdraw a provider cost that has not started yet"),
)
class DeploymentPriceViewSet(_PriceHistoryViewSet):
    """What a deployment's provider charges per million tokens (operators only): with the tenant price, the margin."""

    queryset = DeploymentPrice.objects.select_related("deployment__model", "deployment__provider").order_by(
        "deployment__model__public_id", "deployment_id", "-effective_from", "-pk"
    )
    serializer_class = DeploymentPriceSerializer
    permission_classes = [IsAdminUser]

    def filter_queryset(self, queryset: QuerySet[DeploymentPrice]) -> QuerySet[DeploymentPrice]:
        if self.action != "list":
            return queryset
        filters = DeploymentPriceFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "deployment" in filters.validated_data:
            queryset = queryset.filter(deployment_id=filters.validated_data["deployment"])
        if "model" in filters.validated_data:
            queryset = queryset.filter(deployment__model__public_id=filters.validated_data["model"])
        return queryset

    def perform_create(self, serializer: serializers.Serializer) -> None:
        serializer.instance = deployment_price_add(**serializer.validated_data)

    def withdraw(self, instance: DeploymentPrice) -> None:
        deployment_price_withdraw(cost=instance)
