"""Portico's operator console: the admin site, its dashboard and its report pages.

    /admin/                               the dashboard: providers, routing, performance and cost (?window=)
    /admin/models/                        the admin's list of models and settings
    /admin/reports/tenants/<id>/          a tenant's usage report (?from=&to=)

`PorticoAdminSite` is the default admin site (`gateway.apps.PorticoAdminConfig`),
so every `admin.site.register` and `@admin.register` of the apps lands here.
It sits above every app: the billing panels and the tenant report come from
`billing.report_views`; the providers panel from gateway/console_providers.py,
since the circuit breakers it shows live in the gateway. Staff only, as the whole
admin: `admin_view` sends anyone else to sign in.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

from billing.report_views import dashboard_context, tenant_report_view
from providers.models import Provider
from providers.selectors import deployments_with_latest_probe
from tenants.signin import ThrottledAdminAuthenticationForm

MODELS_TITLE = "Models and settings"


class PorticoAdminSite(admin.AdminSite):
    site_header = "Portico"
    site_title = "Portico"
    index_title = "Console"
    login_form = ThrottledAdminAuthenticationForm

    def get_urls(self) -> list[URLResolver | URLPattern]:
        pages = [
            path("models/", self.admin_view(self.app_list_view), name="app_list"),
            path("reports/tenants/<int:tenant_id>/", self.admin_view(self.tenant_report), name="tenant_report"),
        ]
        return [*pages, *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The dashboard."""
        # Imported once this site exists: it reads the breakers through gateway.admin, which registers here.
        from gateway.console_providers import providers_panel

        checks = deployments_with_latest_probe()
        context = {
            **self.each_context(request),
            "title": self.index_title,
            "models_title": MODELS_TITLE,
            "providers_panel": providers_panel(checks, Provider.objects.order_by("name", "pk")),
            "can_test_connections": request.user.has_perm("providers.change_provider"),
            **dashboard_context(request, deployments=[check.deployment for check in checks]),
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/console/dashboard.html", context)

    def app_list_view(self, request: HttpRequest) -> TemplateResponse:
        """What the admin's index shows by default: every app's models and settings, and recent actions."""
        return super().index(request, extra_context={"title": MODELS_TITLE})

    def tenant_report(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        return tenant_report_view(request, tenant_id, context=self.each_context(request))
