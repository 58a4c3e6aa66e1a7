"""The console's discovered models (routed in one click) and the deployments' health checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from providers.discovery import ModelTaken, discovered_model_route
from providers.models import DeploymentProbe, DiscoveredModel
from providers.selectors import discovered_models_with_routing


class RoutedFilter(admin.SimpleListFilter):
    """Unrouted models by default: those are the ones waiting for an operator."""

    title = "routed"
    parameter_name = "routed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Not routed"), ("yes", "Routed"), ("all", "All")]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        # Not the built-in "All" (no parameter), which means "not routed" here: each choice names its value.
        for value, label in self.lookup_choices:
            query = changelist.get_query_string({self.parameter_name: value})
            yield {"selected": self.value() == value, "query_string": query, "display": label}

    def value(self) -> str:
        return super().value() or "no"

    def queryset(self, request: HttpRequest, queryset: QuerySet[DiscoveredModel]) -> QuerySet[DiscoveredModel]:
        value = self.value()
        return queryset if value == "all" else queryset.filter(routed=value == "yes")


@admin.register(DiscoveredModel)
class DiscoveredModelAdmin(admin.ModelAdmin):
    list_display = ["upstream_id", "provider", "is_routed", "gone", "first_seen_at", "last_seen_at"]
    list_filter = [RoutedFilter, "gone", "provider__kind", "provider"]
    search_fields = ["upstream_id", "provider__name"]
    readonly_fields = ["provider", "upstream_id", "first_seen_at", "last_seen_at", "gone"]
    actions = ["route"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DiscoveredModel]:
        return discovered_models_with_routing()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_route_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(["providers.add_publicmodel", "providers.add_modelroute"])

    @admin.display(boolean=True, description="routed", ordering="routed")
    def is_routed(self, discovered: DiscoveredModel) -> bool:
        return discovered.routed  # type: ignore[attr-defined]

    @admin.action(
        description="Route: a public model of the same id, served by its provider (no price yet)",
        permissions=["route"],
    )
    def route(self, request: HttpRequest, queryset: QuerySet[DiscoveredModel]) -> None:
        for discovered in queryset:
            try:
                deployment = discovered_model_route(discovered=discovered)
            except (ModelTaken, ValidationError) as exc:
                reason = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
                messages.error(request, f"{discovered}: not routed, {reason}")
                continue
            messages.success(
                request,
                f"{deployment.public_id} is served by {deployment.provider.name}. It has no tenant price and "
                "no provider cost: calls are free until you add them on the model and the deployment.",
            )


@admin.register(DeploymentProbe)
class DeploymentProbeAdmin(admin.ModelAdmin):
    list_display = ["probed_at", "deployment", "ok", "latency_ms", "reason", "detail"]
    list_filter = ["ok", "reason", "deployment__provider"]
    list_select_related = ["deployment__provider", "deployment__model"]
    search_fields = ["deployment__model__public_id", "deployment__provider__name", "deployment__upstream_model"]
    date_hierarchy = "probed_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
