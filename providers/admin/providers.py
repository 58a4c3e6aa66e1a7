"""The operator's console for providers, public models and their deployments.

A provider's credential and extra headers are write-only here: the form takes
new ones or a request to clear them, and no page ever renders a stored value,
encrypted or not. Only the names of the extra headers are shown.

Every save goes through the same services as the management API's
(`providers.services`), after the same rules (`providers.admin.forms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.forms.formsets import DELETION_FIELD_NAME
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from providers.adapters import ADAPTERS
from providers.admin.forms import DeploymentForm, ProviderForm, PublicModelForm, form_values, runs_in_process
from providers.discovery import DISCOVERABLE_KINDS, discovery_run
from providers.facade import CAPABILITIES
from providers.http import ProbeResult
from providers.models import ModelRoute, Provider, PublicModel
from providers.services import (
    model_route_add,
    model_route_update,
    provider_create,
    provider_test_connection,
    provider_update,
    public_model_create,
    public_model_set_deployments,
    public_model_update,
)

CAPABILITY_FIELDS = [f"supports_{name}" for name in CAPABILITIES]


def _kind_options_help() -> str:
    """Each kind's options, listed from the adapters so the page never lags behind them."""
    lines = [
        f"{adapter.label}: " + "; ".join(f"{key} ({spec.help})" for key, spec in adapter.option_fields.items())
        for adapter in ADAPTERS.values()
        if adapter.option_fields
    ]
    return " ".join(["A JSON object of the settings only this kind of provider has.", *lines])


KIND_OPTIONS_HELP = _kind_options_help()

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec

# More model ids than this are summarised, so one message stays readable.
_LISTED_MODELS = 20


def listed_ids(ids: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(ids[:_LISTED_MODELS])
    return shown + (f" and {len(ids) - _LISTED_MODELS} more" if len(ids) > _LISTED_MODELS else "")


def _take_row(obj: Provider | PublicModel | ModelRoute, saved: Provider | PublicModel | ModelRoute) -> None:
    """The admin's instance becomes the row a service added, for the inlines, message and redirect that follow."""
    obj.pk, obj._state.adding = saved.pk, False


def _probe_message(provider: Provider, result: ProbeResult) -> str:
    if not result.ok:
        return f"{provider.name}: connection failed, {result.summary}"
    listed = ", ".join(result.model_ids[:_LISTED_MODELS])
    more = len(result.model_ids) - _LISTED_MODELS
    if more > 0:
        listed += f" and {more} more"
    return f"{provider.name}: {result.summary}" + (f" ({listed})" if listed else "")


def _report_probe(request: HttpRequest, provider: Provider) -> None:
    result = provider_test_connection(provider=provider)
    level = messages.SUCCESS if result.ok else messages.ERROR
    messages.add_message(request, level, _probe_message(provider, result))


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "active", "credential_state", "updated_at"]
    list_filter = ["kind", "active"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["test_connection", "discover_models"]

    def get_fieldsets(self, request: HttpRequest, obj: Provider | None = None) -> _FieldsetSpec:
        credential = ["credential", "clear_credential"] if obj is not None and obj.has_credential else ["credential"]
        extra_headers = ["extra_headers"]
        if obj is not None and obj.extra_headers_encrypted:
            extra_headers.append("clear_extra_headers")
        history: tuple[tuple[str, _FieldOpts], ...] = (
            (("History", {"fields": ["created_at", "updated_at"]}),) if obj is not None else ()
        )
        return (
            (None, {"fields": ["name", "kind", "base_url", *credential, "credential_header", "active"]}),
            ("Timeouts", {"fields": ["connect_timeout", "read_timeout", "total_timeout"]}),
            (
                "Compatibility",
                {
                    "fields": [
                        "api_version",
                        "accepts_stream_options",
                        "accepts_max_completion_tokens",
                        "serves_completions",
                        "exact_shapes",
                    ]
                },
            ),
            ("Kind options", {"fields": ["options"], "description": KIND_OPTIONS_HELP}),
            ("Advanced", {"fields": extra_headers, "classes": ["collapse"]}),
            *history,
        )

    @admin.display(description="credential")
    def credential_state(self, provider: Provider) -> str:
        # A missing credential is a fault only for a kind that sends one.
        if runs_in_process(provider.kind):
            return "not needed"
        return display_for_value(provider.has_credential, "", boolean=True)

    def save_model(self, request: HttpRequest, obj: Provider, form: forms.ModelForm, change: bool) -> None:
        secrets = form.secrets()  # type: ignore[attr-defined]
        if change:
            provider_update(provider=obj, fields=form_values(form), **secrets)
            return
        created = provider_create(
            **form_values(form), credential=secrets["credential"] or "", extra_headers=secrets["extra_headers"]
        )
        _take_row(obj, created)

    @admin.action(description="Test connection (calls the provider's models endpoint)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            _report_probe(request, provider)

    @admin.action(description="Discover models now (reads the provider's model list)", permissions=["change"])
    def discover_models(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        outcomes = discovery_run(provider_ids=list(queryset.values_list("pk", flat=True)))
        if not outcomes:
            kinds = ", ".join(DISCOVERABLE_KINDS)
            messages.info(request, f"None of them is of a kind Portico discovers ({kinds}).")
        for outcome in outcomes:
            if not outcome.ok:
                messages.error(request, f"{outcome.provider}: discovery failed, {outcome.summary}")
                continue
            news = f"new: {listed_ids(outcome.new)}" if outcome.new else "nothing new"
            gone = f"; gone: {listed_ids(outcome.gone)}" if outcome.gone else ""
            messages.success(request, f"{outcome.provider}: {outcome.summary}, {news}{gone}")

    def get_urls(self) -> list[URLPattern]:
        test = path(
            "<int:provider_id>/test-connection/",
            self.admin_site.admin_view(require_POST(self.test_connection_view)),
            name="providers_provider_test_connection",
        )
        return [test, *super().get_urls()]

    def test_connection_view(self, request: HttpRequest, provider_id: int) -> HttpResponse:
        provider = get_object_or_404(Provider, pk=provider_id)
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        _report_probe(request, provider)
        return HttpResponseRedirect(reverse("admin:providers_provider_change", args=[provider.pk]))


def _deployment_set(formset: BaseInlineFormSet) -> list[dict[str, object]]:
    """The public model's deployments as the inline leaves them, in the form public_model_set_deployments takes:
    the rows shown and kept (with their ids), the new rows filled in, and any row added elsewhere since the page
    was read, kept as it is. Only the rows marked for deletion are left out."""
    shown = {form.instance.pk for form in formset.initial_forms}
    given: list[dict[str, object]] = [
        {"id": pk} for pk in formset.instance.deployments.values_list("pk", flat=True) if pk not in shown
    ]
    for form in formset.forms:
        added = form.instance.pk is None
        if form.cleaned_data.get(DELETION_FIELD_NAME) or (added and not form.has_changed()):
            continue
        values = {name: value for name, value in form_values(form).items() if name != formset.fk.name}
        given.append(values if added else {"id": form.instance.pk, **values})
    return given


def _save_deployments(model: PublicModel, formset: BaseInlineFormSet) -> None:
    """Write the inline through the service, as the API writes its deployments; then note on the formset what
    changed, as its own save() would, for the admin's history message."""
    given = _deployment_set(formset)
    kept = public_model_set_deployments(model=model, deployments=given)
    formset.new_objects = [route for route, values in zip(kept, given, strict=True) if "id" not in values]
    formset.changed_objects = [
        (form.instance, form.changed_data)
        for form in formset.initial_forms
        if form.has_changed() and form not in formset.deleted_forms
    ]
    formset.deleted_objects = [form.instance for form in formset.deleted_forms if form.instance.pk is not None]


class DeploymentInline(admin.TabularInline):
    model = ModelRoute
    form = DeploymentForm
    fields = [
        "provider",
        "upstream_model",
        "priority",
        "weight",
        "max_requests_per_minute",
        "max_tokens_per_minute",
        "max_in_flight",
        "active",
    ]
    extra = 0
    min_num = 1
    show_change_link = True
    verbose_name_plural = "deployments (tried by priority, lowest first; weight counts under the weighted strategy)"


@admin.register(PublicModel)
class PublicModelAdmin(admin.ModelAdmin):
    form = PublicModelForm
    inlines = [DeploymentInline]
    list_display = ["public_id", "model_family", "strategy", "deployment_count", "active", "capabilities"]
    list_filter = ["active", "strategy", "ensemble", "deployments__provider", *CAPABILITY_FIELDS]
    search_fields = ["public_id", "model_family", "deployments__upstream_model", "deployments__provider__name"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["public_id", "model_family", "active"]}),
        ("Metadata", {"fields": ["owned_by", "context_window", "max_output_tokens", "created_at"]}),
        ("Capabilities", {"fields": CAPABILITY_FIELDS}),
        ("Routing", {"fields": ["strategy", "fallbacks", "retry_on", "mid_stream_recovery", "ensemble"]}),
        ("Timeouts", {"fields": ["timeout", "first_byte_timeout", "stall_timeout"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PublicModel]:
        return super().get_queryset(request).annotate(deployment_total=Count("deployments"))

    def save_model(self, request: HttpRequest, obj: PublicModel, form: forms.ModelForm, change: bool) -> None:
        if change:
            public_model_update(model=obj, fields=form_values(form))
        else:
            _take_row(obj, public_model_create(**form_values(form)))

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if formset.model is ModelRoute:
            _save_deployments(form.instance, formset)
        else:
            super().save_formset(request, form, formset, change)

    @admin.display(description="deployments", ordering="deployment_total")
    def deployment_count(self, model: PublicModel) -> int:
        return model.deployment_total  # type: ignore[attr-defined]

    @admin.display(description="capabilities")
    def capabilities(self, model: PublicModel) -> str:
        return ", ".join(name for name in CAPABILITIES if getattr(model, f"supports_{name}")) or "none"


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    """One deployment on its own page: where its provider costs are kept."""

    form = DeploymentForm
    list_display = ["__str__", "provider", "upstream_model", "priority", "weight", "active"]
    list_filter = ["provider", "provider__kind", "active", "model__strategy"]
    list_select_related = ["model", "provider"]
    search_fields = ["model__public_id", "upstream_model", "provider__name"]
    autocomplete_fields = ["model"]
    readonly_fields = ["created_at"]
    ordering = ["model__public_id", "priority", "id"]
    fieldsets = [
        (None, {"fields": ["model", "provider", "upstream_model", "active", "created_at"]}),
        ("Order", {"fields": ["priority", "weight"]}),
        ("Caps", {"fields": ["max_requests_per_minute", "max_tokens_per_minute", "max_in_flight"]}),
    ]

    def save_model(self, request: HttpRequest, obj: ModelRoute, form: forms.ModelForm, change: bool) -> None:
        if change:
            model_route_update(route=obj, fields=form_values(form))
        else:
            _take_row(obj, model_route_add(**form_values(form)))
