"""The management API under /api/: tenants' keys, usage, rate limits and budgets (DRF), and its OpenAPI schema."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from billing.apis import BudgetAlertViewSet, BudgetViewSet, RateLimitViewSet, UsageViewSet
from tenants.apis import ApiKeyViewSet, TenantViewSet

router = DefaultRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("usage", UsageViewSet, basename="usage")
router.register("rate-limits", RateLimitViewSet, basename="ratelimit")
router.register("budgets", BudgetViewSet, basename="budget")
router.register("budget-alerts", BudgetAlertViewSet, basename="budgetalert")

urlpatterns: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include(router.urls)),
]
