"""The management API under /api/: providers, models, tenants and their keys, usage, prices, limits and budgets (DRF),
and its schema."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.routers import DefaultRouter

from billing.apis import (
    BudgetAlertViewSet,
    BudgetViewSet,
    DeploymentPriceViewSet,
    PriceViewSet,
    RateLimitViewSet,
    UsageViewSet,
)
from billing.report_apis import UsageReportView
from notifications.apis import AlertChannelViewSet
from providers.apis import ModelListSourceViewSet, ProviderViewSet
from tenants.apis import ApiKeyViewSet, IsOperatorOrTenantAdmin, ModelViewSet, TenantMemberViewSet, TenantViewSet
from tenants.authentication import ManagementTokenAuthentication

router = DefaultRouter()
router.register("providers", ProviderViewSet, basename="provider")
router.register("model-list-sources", ModelListSourceViewSet, basename="modellistsource")
router.register("models", ModelViewSet, basename="publicmodel")
router.register("tenants", TenantViewSet, basename="tenant")
router.register(r"tenants/(?P<tenant_id>\d+)/members", TenantMemberViewSet, basename="tenantmember")
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("usage", UsageViewSet, basename="usage")
router.register("prices", PriceViewSet, basename="price")
router.register("deployment-prices", DeploymentPriceViewSet, basename="deploymentprice")
router.register("rate-limits", RateLimitViewSet, basename="ratelimit")
router.register("budgets", BudgetViewSet, basename="budget")
router.register("budget-alerts", BudgetAlertViewSet, basename="budgetalert")
router.register("alert-channels", AlertChannelViewSet, basename="alertchannel")


class SchemaAccess(IsOperatorOrTenantAdmin):
    """The schema maps every management endpoint: for those who may call them, unless the operator publishes it."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return settings.PORTICO_PUBLIC_MANAGEMENT_SCHEMA or super().has_permission(request, view)


class SchemaView(SpectacularAPIView):
    # A staff member signed in to the admin may read it in the browser too.
    authentication_classes = [ManagementTokenAuthentication, SessionAuthentication]
    permission_classes = [SchemaAccess]


urlpatterns: list[URLPattern | URLResolver] = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("usage/report/", UsageReportView.as_view(), name="usage-report"),
    path("", include(router.urls)),
]
