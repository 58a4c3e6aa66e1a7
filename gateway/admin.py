"""The breaker panel: each deployment's circuit breaker in the console, its reset, and the history of its changes.

A breaker's state lives in Redis (or in this process without it), not in the
database, so every page reads it through `breakers_for_settings().state()`.
A Redis that does not answer makes a breaker read as closed, as the request
path counts it then; the pages say so, and stop asking for the rest of the
page, so a page waits for one timeout at most.

providers sits below gateway and may not import it, so the deployment and
public model pages get their breakers here: `show_breakers_on_deployments()`,
called from `GatewayConfig.ready()` once every app's admin is loaded,
registers again whatever admin those models have (billing's, with the
prices) as a subclass that adds them, one registration per model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST
from redis.exceptions import RedisError

from gateway.breakers import CLOSED, HALF_OPEN, OPEN, Breakers, BreakerState, breakers_for_settings
from gateway.models import BreakerTransition
from providers.models import ModelRoute, PublicModel

LABELS = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half-open"}
UNREACHABLE = "closed (Redis unreachable)"
UNKNOWN_REASON = "unknown: Redis does not answer"
RESET_MESSAGE = "Reset its circuit breaker."


def _unreadable(state: BreakerState) -> bool:
    # RedisBreakers.state() answers for a Redis that does not answer with a closed breaker so explained.
    return state.state == CLOSED and state.reason.startswith("unknown")


class BreakerReader:
    """Reads the breakers shown on one page, each once; after Redis has failed to answer, asks it no more."""

    def __init__(self, breakers: Breakers | None = None) -> None:
        self.breakers = breakers if breakers is not None else breakers_for_settings()
        self.unreachable = False
        self._read: dict[int, BreakerState] = {}

    def state(self, route_id: int) -> BreakerState:
        state = self._read.get(route_id)
        if state is None:
            if self.unreachable:
                state = BreakerState(route_id, CLOSED, None, None, UNKNOWN_REASON, ())
            else:
                state = self.breakers.state(route_id)
                self.unreachable = _unreadable(state)
            self._read[route_id] = state
        return state


def label(state: BreakerState) -> str:
    return UNREACHABLE if _unreadable(state) else LABELS.get(state.state, state.state)


def when(moment: datetime | None) -> str:
    return "" if moment is None else dateformat.format(timezone.localtime(moment), "Y-m-d H:i:s T")


def history_url(route_id: int) -> str:
    return f"{reverse('admin:gateway_breakertransition_changelist')}?route_id={route_id}"


def _may(request: HttpRequest, action: str) -> bool:
    """Whether the user may `action` ("view", "change") deployments: breakers are part of them."""
    opts = ModelRoute._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")


def _state_html(state: BreakerState) -> SafeString:
    text = format_html("<strong>{}</strong>", label(state)) if state.state != CLOSED else label(state)
    if state.since is not None and not _unreadable(state):
        text = format_html("{} since {}", text, when(state.since))
    if state.until is not None:
        text = format_html("{}; probes from {}", text, when(state.until))
    return format_html("{}", text)


def breakers_reset(model_admin: admin.ModelAdmin, request: HttpRequest, routes: Iterable[ModelRoute]) -> None:
    """Close each deployment's breaker for every process; the breakers write the reset to the history, and the
    admin's log keeps who did it."""
    breakers = breakers_for_settings()
    for route in routes:
        state = breakers.state(route.pk)
        if state.state == CLOSED and not _unreadable(state):
            messages.info(request, f"The circuit breaker of {route} is already closed.")
            continue
        try:
            breakers.reset(route.pk)
        except RedisError:
            messages.error(request, f"Redis does not answer: the circuit breaker of {route} was not reset.")
            return
        model_admin.log_change(request, route, RESET_MESSAGE)
        messages.success(request, f"The circuit breaker of {route} is closed again, for every process.")


@dataclass(frozen=True, slots=True)
class PanelRow:
    route: ModelRoute
    state: BreakerState
    label: str
    since: str
    until: str
    errors: tuple[tuple[str, str], ...]  # (when, reason), newest first
    history_url: str
    resettable: bool

    @classmethod
    def of(cls, route: ModelRoute, state: BreakerState) -> PanelRow:
        unreadable = _unreadable(state)
        return cls(
            route=route,
            state=state,
            label=label(state),
            since="" if unreadable else when(state.since),
            until=when(state.until),
            errors=tuple((when(error.at), error.reason) for error in state.last_errors),
            history_url=history_url(route.pk),
            resettable=state.state != CLOSED,
        )


# --- the history and the panel --------------------------------------------------------------------------------


class DeploymentFilter(admin.SimpleListFilter):
    """By deployment id: history outlives deployments, so a deleted one's id still filters (from a link)."""

    title = "deployment"
    parameter_name = "route_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        routes = ModelRoute.objects.select_related("model", "provider").order_by("model__public_id", "priority")
        return [(str(route.pk), str(route)) for route in routes]

    def queryset(self, request: HttpRequest, queryset: QuerySet[BreakerTransition]) -> QuerySet[BreakerTransition]:
        value = self.value()
        return queryset.filter(route_id=int(value)) if value and value.isdigit() else queryset


@admin.register(BreakerTransition)
class BreakerTransitionAdmin(admin.ModelAdmin):
    """The history: written by the breakers only, read here, never edited."""

    list_display = ["at", "deployment", "from_state", "to_state", "reason", "process"]
    list_filter = ["to_state", "from_state", DeploymentFilter, "at"]
    search_fields = ["route_name"]
    search_help_text = "Part of a deployment's name: provider/upstream model."
    date_hierarchy = "at"
    list_per_page = 100
    # Counting the whole history on each page view costs more than the number is worth.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="deployment", ordering="route_name")
    def deployment(self, row: BreakerTransition) -> SafeString:
        return format_html('<a href="?route_id={}">{}</a>', row.route_id, row.route_name or f"#{row.route_id}")

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        own = [
            path("panel/", site.admin_view(self.panel_view), name="gateway_breakertransition_panel"),
            path(
                "panel/<int:route_id>/reset/",
                site.admin_view(require_POST(self.reset_view)),
                name="gateway_breakertransition_reset",
            ),
        ]
        return [*own, *super().get_urls()]

    def panel_view(self, request: HttpRequest) -> HttpResponse:
        if not (_may(request, "view") or _may(request, "change")):
            raise PermissionDenied
        reader = BreakerReader()
        routes = ModelRoute.objects.select_related("model", "provider").order_by("model__public_id", "priority", "id")
        rows = [PanelRow.of(route, reader.state(route.pk)) for route in routes]
        counts = Counter(row.state.state for row in rows)
        shown = request.GET.get("state", "")
        context = {
            **self.admin_site.each_context(request),
            "title": "Circuit breakers",
            "opts": self.opts,
            "rows": [row for row in rows if row.state.state == shown] if shown in LABELS else rows,
            "shown": shown if shown in LABELS else "",
            "choices": [("", "all", len(rows))] + [(code, name, counts[code]) for code, name in LABELS.items()],
            "unreachable": reader.unreachable,
            "can_reset": _may(request, "change"),
        }
        return TemplateResponse(request, "admin/gateway/breakers.html", context)

    def reset_view(self, request: HttpRequest, route_id: int) -> HttpResponse:
        if not _may(request, "change"):
            raise PermissionDenied
        route = get_object_or_404(ModelRoute.objects.select_related("model", "provider"), pk=route_id)
        breakers_reset(self, request, [route])
        return HttpResponseRedirect(reverse("admin:gateway_breakertransition_panel"))


# --- breakers on the deployment and public model pages --------------------------------------------------------


class DeploymentBreakerAdmin(admin.ModelAdmin):
    """Adds the breaker to a deployment admin: a column, a field on its page, and a reset action."""

    change_list_template = "admin/gateway/deployment_change_list.html"

    def get_list_display(self, request: HttpRequest) -> Any:
        reader = BreakerReader()  # one per page: the page's rows share it

        @admin.display(description="breaker")
        def breaker(route: ModelRoute) -> SafeString:
            return _state_html(reader.state(route.pk))

        return [*super().get_list_display(request), breaker]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), "breaker"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        return fieldsets if obj is None else [*fieldsets, ("Circuit breaker", {"fields": ["breaker"]})]

    @admin.display(description="state")
    def breaker(self, route: ModelRoute) -> SafeString:
        state = BreakerReader().state(route.pk)
        errors = format_html_join("", "<li>{}: {}</li>", ((when(e.at), e.reason) for e in state.last_errors))
        reason = format_html("<p>{}</p>", state.reason) if state.reason else ""
        return format_html(
            '<p>{}</p>{}<ul>{}</ul><p><a href="{}">History</a> · <a href="{}">Breaker panel</a></p>',
            _state_html(state),
            reason,
            errors,
            history_url(route.pk),
            reverse("admin:gateway_breakertransition_panel"),
        )

    @admin.action(description="Reset the circuit breakers of the selected deployments", permissions=["change"])
    def reset_breakers(self, request: HttpRequest, queryset: QuerySet[ModelRoute]) -> None:
        breakers_reset(self, request, queryset.select_related("model", "provider"))


class PublicModelBreakerAdmin(admin.ModelAdmin):
    """Adds a read-only table of its deployments' breakers to a public model's page."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), "deployment_breakers"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        return fieldsets if obj is None else [*fieldsets, ("Circuit breakers", {"fields": ["deployment_breakers"]})]

    @admin.display(description="deployments")
    def deployment_breakers(self, model: PublicModel) -> SafeString:
        reader = BreakerReader()
        rows = [
            (
                reverse("admin:providers_modelroute_change", args=[route.pk]),
                route.name,
                _state_html(state := reader.state(route.pk)),
                state.last_errors[0].reason if state.last_errors else "",
                history_url(route.pk),
            )
            for route in model.deployments.select_related("provider").order_by("priority", "id")
        ]
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td><a href="{}">history</a></td></tr>',
            rows,
        )
        return format_html(
            "<table><thead><tr><th>deployment</th><th>breaker</th><th>last error</th><th></th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">Breaker panel</a></p>',
            body,
            reverse("admin:gateway_breakertransition_panel"),
        )


def show_breakers_on_deployments(site: admin.AdminSite = admin.site) -> None:
    """Register the deployment and public model pages again with their breakers, each as a subclass of the
    admin registered for it now."""
    for model, mixin in ((ModelRoute, DeploymentBreakerAdmin), (PublicModel, PublicModelBreakerAdmin)):
        if not site.is_registered(model):
            continue
        current = type(site.get_model_admin(model))
        if issubclass(current, mixin):
            continue
        attrs: dict[str, Any] = {"__module__": __name__}
        if mixin is DeploymentBreakerAdmin:
            attrs["actions"] = [*(current.actions or ()), "reset_breakers"]
        site.unregister(model)
        site.register(model, type(f"Breaker{current.__name__}", (mixin, current), attrs))
