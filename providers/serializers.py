"""What the management API reads and writes for providers and public models.

A provider's credential and extra headers are write-only, as in the admin:
they go in, encrypted, and only `has_credential` and the header names come
back; so is a model-list source's credential. A public model's deployments
are nested and written as one set.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers.credentials import CredentialUnreadable, decrypt_headers
from providers.facade import CAPABILITIES
from providers.model_lists.handles import validate_handle_kinds
from providers.models import DEFAULT_KIND, ModelListRefresh, ModelListSource, ModelRoute, Provider, PublicModel
from providers.options import RETRY_CLASSES
from providers.services import (
    MODEL_TIMEOUTS,
    PROVIDER_TIMEOUTS,
    model_route_check,
    provider_check,
    public_model_check,
)

# The range is checked by the rules in providers.services, with the console's words; this is for the reader.
_TIMEOUT_HELP = "Seconds, from 0.1 to 86400."


def _given(attrs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: attrs[name] for name in names if name in attrs}


class ProviderSerializer(serializers.ModelSerializer):
    credential = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=8192,
        help_text="The provider's API key; stored encrypted, never shown. Empty removes it; left out keeps it.",
    )
    extra_headers = serializers.DictField(
        child=serializers.CharField(max_length=8192, allow_blank=True),
        write_only=True,
        required=False,
        help_text="Headers sent on every upstream call; every value is a secret. {} removes them; left out keeps them.",
    )
    has_credential = serializers.BooleanField(read_only=True)
    extra_header_names = serializers.SerializerMethodField(help_text="The names of the stored extra headers.")
    connect_timeout = serializers.FloatField(required=False, help_text=_TIMEOUT_HELP)
    read_timeout = serializers.FloatField(required=False, help_text=_TIMEOUT_HELP)
    total_timeout = serializers.FloatField(required=False, help_text=_TIMEOUT_HELP)

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "kind",
            "base_url",
            "credential",
            "has_credential",
            "credential_header",
            "extra_headers",
            "extra_header_names",
            "connect_timeout",
            "read_timeout",
            "total_timeout",
            "api_version",
            "accepts_stream_options",
            "accepts_max_completion_tokens",
            "serves_completions",
            "exact_shapes",
            "options",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_extra_header_names(self, provider: Provider) -> list[str]:
        try:
            return sorted(decrypt_headers(provider.extra_headers_encrypted))
        except CredentialUnreadable:
            return []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A change is checked as it would leave the provider: what it does not give stays as stored.
        provider_check(
            kind=attrs.get("kind", getattr(self.instance, "kind", DEFAULT_KIND)),
            base_url=attrs.get("base_url", getattr(self.instance, "base_url", "")),
            extra_headers=attrs.get("extra_headers"),
            timeouts=_given(attrs, PROVIDER_TIMEOUTS),
        )
        return attrs


class DeploymentSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(
        required=False, help_text="Give it to change that deployment; leave it out to add one."
    )
    provider = serializers.SlugRelatedField(slug_field="name", queryset=Provider.objects.all())

    class Meta:
        model = ModelRoute
        fields = [
            "id",
            "provider",
            "upstream_model",
            "priority",
            "weight",
            "max_requests_per_minute",
            "max_tokens_per_minute",
            "max_in_flight",
            "active",
        ]
        # No bounds of the column's here: model_route_check, which the console runs too, alone says the range.
        extra_kwargs = {"priority": {"min_value": None, "max_value": None}}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        model_route_check(priority=attrs.get("priority"))
        return attrs


@extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=CAPABILITIES)))
class CapabilitiesField(serializers.Field):
    """The `supports_*` flags as a list of names."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def to_representation(self, model: PublicModel) -> list[str]:
        return [name for name in CAPABILITIES if getattr(model, f"supports_{name}")]

    def to_internal_value(self, data: Any) -> dict[str, bool]:
        names = serializers.ListField(child=serializers.ChoiceField(choices=CAPABILITIES)).to_internal_value(data)
        return {f"supports_{name}": name in names for name in CAPABILITIES}


class PublicModelSummarySerializer(serializers.ModelSerializer):
    """A public model as a tenant admin sees it: what it promises, nothing of who serves it."""

    capabilities = CapabilitiesField(read_only=True)

    class Meta:
        model = PublicModel
        fields = [
            "id",
            "public_id",
            "owned_by",
            "model_family",
            "context_window",
            "max_output_tokens",
            "capabilities",
            "active",
            "created_at",
        ]
        read_only_fields = fields


class PublicModelSerializer(serializers.ModelSerializer):
    capabilities = CapabilitiesField(required=False, help_text="What the model promises; chat, streaming, tools…")
    fallbacks = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Public model ids tried in order once every deployment of this one has failed.",
    )
    retry_on = serializers.ListField(
        child=serializers.ChoiceField(choices=RETRY_CLASSES),
        required=False,
        help_text="The failures that move a call on to the next deployment.",
    )
    deployments = DeploymentSerializer(
        many=True, required=False, help_text="The whole set: those left out of a change are deleted."
    )
    timeout = serializers.FloatField(required=False, allow_null=True, help_text=_TIMEOUT_HELP)
    first_byte_timeout = serializers.FloatField(required=False, allow_null=True, help_text=_TIMEOUT_HELP)
    stall_timeout = serializers.FloatField(required=False, allow_null=True, help_text=_TIMEOUT_HELP)

    class Meta:
        model = PublicModel
        fields = [
            *PublicModelSummarySerializer.Meta.fields,
            "strategy",
            "fallbacks",
            "retry_on",
            "mid_stream_recovery",
            "ensemble",
            *MODEL_TIMEOUTS,
            "deployments",
        ]
        read_only_fields = ["created_at"]

    def validate_deployments(self, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        mine = set(self.instance.deployments.values_list("pk", flat=True)) if self.instance else set()
        strangers = sorted(d["id"] for d in deployments if "id" in d and d["id"] not in mine)
        if strangers:
            raise serializers.ValidationError(f"Not deployments of this model: {', '.join(map(str, strangers))}.")
        return deployments

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        public_model_check(timeouts=_given(attrs, MODEL_TIMEOUTS))
        return attrs


class ModelListSourceSerializer(serializers.ModelSerializer):
    credential = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=8192,
        help_text="Sent to the list and to every provider the source makes; stored encrypted, never shown. "
        "Empty removes it; left out keeps it.",
    )
    has_credential = serializers.BooleanField(read_only=True)
    handle_kinds = serializers.JSONField(
        required=False,
        help_text='Which kind of provider serves a handle, first match wins: [{"prefix": "/openai/", '
        '"kind": "openai"}, {"suffix": "/v1/messages", "kind": "anthropic"}]. Left out: the defaults.',
    )
    refresh_interval = serializers.IntegerField(
        required=False, min_value=10, max_value=31_536_000, help_text="Seconds between two reads of the list."
    )
    # A string, not the refresh's status enum again: it is also "" before the first refresh.
    last_status = serializers.CharField(
        read_only=True, help_text="The last refresh's status: ok, partial or failed; empty before the first."
    )

    class Meta:
        model = ModelListSource
        fields = [
            "id",
            "name",
            "url",
            "base_url",
            "credential",
            "has_credential",
            "refresh_interval",
            "enabled",
            "handle_kinds",
            "last_refreshed_at",
            "last_status",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_refreshed_at", "last_status", "last_error", "created_at", "updated_at"]

    def validate_handle_kinds(self, rules: Any) -> Any:
        try:
            validate_handle_kinds(rules)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return rules


class ModelListRefreshSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelListRefresh
        fields = ["id", "source", "started_at", "finished_at", "status", "error", "entry_errors", "diff"]
        read_only_fields = fields
