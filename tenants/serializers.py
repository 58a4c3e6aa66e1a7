"""What the management API reads and writes for tenants: their settings, and a tenant's or a key's queue policy
(docs/queueing.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from providers.models import PublicModel
from tenants.cors import validate_cors_origins
from tenants.models import ApiKey, Tenant
from tenants.services import QUEUE_POLICY_FIELDS

# Ids are signed 64-bit integers in every database Portico runs on, counted from 1. A larger one names no row,
# and SQLite cannot even be asked about it (OverflowError): a list filter refuses it as a 400.
ROW_ID_MAX = 2**63 - 1


class RowIdFilter(serializers.IntegerField):
    """A list filter's query parameter naming a row by its id; optional."""

    def __init__(self, **options: Any) -> None:
        super().__init__(required=False, min_value=1, max_value=ROW_ID_MAX, **options)


class TenantQueuePolicySerializer(serializers.ModelSerializer):
    """What a request refused for capacity may do: `off`, `wait` in line, `async` jobs when asked, or `both`."""

    class Meta:
        model = Tenant
        fields = list(QUEUE_POLICY_FIELDS)


class ApiKeyQueuePolicySerializer(serializers.ModelSerializer):
    """A key's own queue policy; an empty `queue_mode` and null numbers take the tenant's."""

    class Meta:
        model = ApiKey
        fields = list(QUEUE_POLICY_FIELDS)
        extra_kwargs = {"queue_mode": {"allow_blank": True}}


class TenantChangeSerializer(serializers.ModelSerializer):
    """A tenant as an operator creates or changes it; answered as TenantSerializer reads it."""

    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        allow_null=True,
        help_text="Public model ids the tenant may call; null for every model, [] for none.",
    )
    cors_origins = serializers.ListField(
        child=serializers.CharField(max_length=300, trim_whitespace=False),
        required=False,
        validators=[validate_cors_origins],
        help_text='Browser origins that may call /v1/ with the tenant\'s keys, e.g. ["https://app.example.com"].',
    )

    class Meta:
        model = Tenant
        fields = ["name", "slug", "active", "allowed_models", "describe_models", "cors_origins", *QUEUE_POLICY_FIELDS]
        # A taken slug is refused by the service (tenant_add, tenant_update), in the console's words too.
        extra_kwargs: dict[str, dict[str, list[object]]] = {"slug": {"validators": []}}

    def validate_allowed_models(self, public_ids: list[str] | None) -> list[PublicModel] | None:
        if public_ids is None:
            return None
        found = {model.public_id: model for model in PublicModel.objects.filter(public_id__in=public_ids)}
        unknown = sorted(set(public_ids) - set(found))
        if unknown:
            raise serializers.ValidationError(f"Unknown model: {', '.join(unknown)}.")
        return [found[public_id] for public_id in dict.fromkeys(public_ids)]
