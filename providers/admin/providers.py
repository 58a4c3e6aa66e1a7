"""The operator's console for providers, public models and their deployments.

A provider's credential and extra headers are write-only here: the form takes
new ones or a request to clear them, and no page ever renders a stored value,
encrypted or not. Only the names of the extra headers are shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from providers.adapters import ADAPTERS, adapter_for, needs_base_url
from providers.credentials import CredentialUnreadable, decrypt_headers
from providers.discovery import DISCOVERABLE_KINDS, discovery_run
from providers.facade import CAPABILITIES
from providers.http import ProbeResult
from providers.models import HEADER_NAME, ModelRoute, Provider, PublicModel
from providers.options import RETRY_CLASSES, default_retry_on
from providers.services import provider_set_credential, provider_set_extra_headers, provider_test_connection

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


def runs_in_process(kind: str) -> bool:
    """Kinds whose transport answers in-process (the mock) call no server and need no credential. A kind's own
    transport may still call its server (Replicate's follows its predictions): such a kind needs one."""
    return isinstance(adapter_for(kind).transport(), httpx.MockTransport)


def _base_url_help() -> str:
    """The model's example, then each kind with a public address of its own, listed from the adapters."""
    own = [
        f"{adapter.label}: {adapter.default_base_url}"
        for kind, adapter in ADAPTERS.items()
        if adapter.default_base_url and not runs_in_process(kind)
    ]
    text = str(Provider._meta.get_field("base_url").help_text)
    return f"{text}. Blank for a kind's own address ({'; '.join(own)})." if own else text


def listed_ids(ids: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(ids[:_LISTED_MODELS])
    return shown + (f" and {len(ids) - _LISTED_MODELS} more" if len(ids) > _LISTED_MODELS else "")


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one a refused form was sent with."""

    def format_value(self, value: Any) -> None:
        return None


def _header_names(provider: Provider) -> str:
    try:
        names = sorted(decrypt_headers(provider.extra_headers_encrypted))
    except CredentialUnreadable:
        return "unreadable with this PORTICO_CREDENTIAL_KEY"
    return ", ".join(names) or "none"


class ProviderForm(forms.ModelForm):
    # Declared to choose the scheme a bare host gets (Django 6 makes https the default; say so now).
    base_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=_base_url_help(),
    )
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The provider's API key. Leave blank to keep the current credential. Stored encrypted.",
    )
    clear_credential = forms.BooleanField(required=False, help_text="Remove the stored credential.")
    extra_headers = forms.CharField(
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Sent on every upstream call, as JSON: {"OpenAI-Organization": "org-…"}. Every value is '
        "treated as a secret: stored encrypted, never shown again, redacted from answers. "
        "Leave blank to keep the current headers; a new set replaces them all.",
    )
    clear_extra_headers = forms.BooleanField(required=False, help_text="Remove the stored extra headers.")

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "connect_timeout",
            "read_timeout",
            "total_timeout",
            "credential_header",
            "api_version",
            "accepts_stream_options",
            "accepts_max_completion_tokens",
            "serves_completions",
            "exact_shapes",
            "options",
            "active",
        ]
        # The model's texts predate the kinds that added their own header and version; the form names them all.
        help_texts = {
            "credential_header": "The header that carries the credential; blank for the kind's own (Authorization: "
            "Bearer, x-api-key for Anthropic, api-key for Azure, x-goog-api-key for Gemini).",
            "api_version": "Azure OpenAI: the api-version query parameter, e.g. 2024-10-21. Gemini: the API version "
            "in the path, v1beta when blank.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.extra_headers_encrypted:
            field = self.fields["extra_headers"]
            field.help_text = f"{field.help_text} Current headers: {_header_names(self.instance)}."

    def clean_extra_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("extra_headers") or ""
        if not text.strip():
            return None
        try:
            headers = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Enter a JSON object of header names and values.") from None
        if not isinstance(headers, dict) or not all(isinstance(v, str | int | float) for v in headers.values()):
            raise forms.ValidationError("Enter a JSON object of header names and values.")
        for name in headers:
            try:
                HEADER_NAME(name)
            except ValidationError:
                # The message names the header, never its value.
                raise forms.ValidationError(f"{name!r} is not a valid HTTP header name.") from None
        return {str(name): str(value) for name, value in headers.items()}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("credential") and cleaned.get("clear_credential"):
            raise forms.ValidationError("Enter a new credential or clear the current one, not both.")
        if cleaned.get("extra_headers") and cleaned.get("clear_extra_headers"):
            raise forms.ValidationError("Enter new extra headers or clear the current ones, not both.")
        kind = cleaned.get("kind")
        if kind and not cleaned.get("base_url") and needs_base_url(kind):
            self.add_error("base_url", "This kind of provider needs a base URL.")
        return cleaned


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
        if form.cleaned_data.get("clear_credential"):
            provider_set_credential(provider=obj, credential="")
        elif form.cleaned_data.get("credential"):
            provider_set_credential(provider=obj, credential=form.cleaned_data["credential"])
        if form.cleaned_data.get("clear_extra_headers"):
            provider_set_extra_headers(provider=obj, headers={})
        elif form.cleaned_data.get("extra_headers"):
            provider_set_extra_headers(provider=obj, headers=form.cleaned_data["extra_headers"])
        super().save_model(request, obj, form, change)

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


class PublicIdsField(forms.CharField):
    """An ordered list of public model ids, typed as one line: 'gpt-4o, gpt-4o-mini'."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [name for name in (part.strip() for part in text.replace("\n", ",").split(",")) if name]


class PublicModelForm(forms.ModelForm):
    fallbacks = PublicIdsField(
        required=False, help_text=PublicModel._meta.get_field("fallbacks").help_text + " Separate them with commas."
    )
    retry_on = forms.MultipleChoiceField(
        required=False,
        choices=[(name, name) for name in RETRY_CLASSES],
        widget=forms.CheckboxSelectMultiple,
        initial=default_retry_on,
        help_text=PublicModel._meta.get_field("retry_on").help_text,
    )

    class Meta:
        model = PublicModel
        fields = "__all__"


class DeploymentInline(admin.TabularInline):
    model = ModelRoute
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

    @admin.display(description="deployments", ordering="deployment_total")
    def deployment_count(self, model: PublicModel) -> int:
        return model.deployment_total  # type: ignore[attr-defined]

    @admin.display(description="capabilities")
    def capabilities(self, model: PublicModel) -> str:
        return ", ".join(name for name in CAPABILITIES if getattr(model, f"supports_{name}")) or "none"


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    """One deployment on its own page: where its provider costs are kept."""

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
