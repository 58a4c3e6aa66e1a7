"""The console's forms for providers, public models and deployments.

Each runs the management API's rules (`providers.services`: `provider_check`,
`public_model_check`, `model_route_check`) in its `clean()`, so both refuse the
same edits in the same words, each at its field. What the forms add of their own
is how the page takes a value: headers typed as JSON, a credential or headers to
clear, fallbacks typed on one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from django import forms
from django.core.exceptions import ValidationError

from providers.adapters import ADAPTERS, adapter_for
from providers.credentials import CredentialUnreadable, decrypt_headers
from providers.models import ModelRoute, Provider, PublicModel
from providers.options import RETRY_CLASSES, default_retry_on
from providers.services import (
    MODEL_TIMEOUTS,
    PROVIDER_TIMEOUTS,
    model_route_check,
    provider_check,
    public_model_check,
)


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


def form_values(form: forms.ModelForm) -> dict[str, Any]:
    """The model's fields the form edits, as its instance holds them once validated: cleaned, and normalised by
    the model's own clean() (a kind's options). The form's other fields (a credential to encrypt) are left out."""
    instance = form.instance
    editable = {field.name for field in instance._meta.concrete_fields if not field.primary_key}
    return {name: getattr(instance, name) for name in form.fields if name in editable}


class CheckedForm(forms.ModelForm):
    def check(self, rule: Callable[..., None], **values: Any) -> None:
        """Run one of the management API's rules and say each refusal at its field, unless that field has already
        said why it is wrong (its value is missing from the rule's then, which would only mislead)."""
        try:
            rule(**values)
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                if not self.has_error(field):
                    self.add_error(field if field in self.fields else None, messages)

    def given(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in names if name in self.fields}


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


class ProviderForm(CheckedForm):
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
        """The JSON typed in, as the API's object of names and values; whether the names are header names is
        the shared rule's to say."""
        text = self.cleaned_data.get("extra_headers") or ""
        if not text.strip():
            return None
        try:
            headers = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Enter a JSON object of header names and values.") from None
        if not isinstance(headers, dict) or not all(isinstance(v, str | int | float) for v in headers.values()):
            raise forms.ValidationError("Enter a JSON object of header names and values.")
        return {str(name): str(value) for name, value in headers.items()}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("credential") and cleaned.get("clear_credential"):
            raise forms.ValidationError("Enter a new credential or clear the current one, not both.")
        if cleaned.get("extra_headers") and cleaned.get("clear_extra_headers"):
            raise forms.ValidationError("Enter new extra headers or clear the current ones, not both.")
        self.check(
            provider_check,
            kind=cleaned.get("kind"),
            base_url=cleaned.get("base_url"),
            extra_headers=cleaned.get("extra_headers"),
            timeouts=self.given(PROVIDER_TIMEOUTS),
        )
        return cleaned

    def secrets(self) -> dict[str, Any]:
        """The credential and extra headers as the services take them: None keeps the stored ones, empty clears.
        Only the clear boxes clear: a blank credential, or headers typed as {}, keep what is stored."""
        cleaned = self.cleaned_data
        credential = "" if cleaned.get("clear_credential") else cleaned.get("credential") or None
        headers = {} if cleaned.get("clear_extra_headers") else cleaned.get("extra_headers") or None
        return {"credential": credential, "extra_headers": headers}


class PublicIdsField(forms.CharField):
    """An ordered list of public model ids, typed as one line: 'gpt-4o, gpt-4o-mini'."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [name for name in (part.strip() for part in text.replace("\n", ",").split(",")) if name]


class PublicModelForm(CheckedForm):
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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.check(public_model_check, timeouts=self.given(MODEL_TIMEOUTS))
        return cleaned


class DeploymentForm(CheckedForm):
    """A deployment, in its public model's inline or on its own page."""

    class Meta:
        model = ModelRoute
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.check(model_route_check, priority=cleaned.get("priority"))
        return cleaned
