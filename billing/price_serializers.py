"""The management API's bodies for prices: what tenants pay per public model, and what providers charge per deployment.

Each is a row of a history (billing/prices.py): created with the time it
starts, never changed after. Money is a decimal string in USD per million
tokens.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from billing.models import DeploymentPrice, Price
from providers.models import ModelRoute, PublicModel
from tenants.serializers import RowIdFilter

PER_MILLION_FIELDS = ("input_per_million", "output_per_million", "cached_input_per_million")
# As the columns hold them (billing.models.PerMillion).
_PER_MILLION = {"max_digits": 12, "decimal_places": 6, "min_value": 0}


class _PerMillionSerializer(serializers.ModelSerializer):
    effective_from = serializers.DateTimeField(
        required=False, help_text="When it starts charging (ISO 8601); now if left out. A later start schedules it."
    )
    input_per_million = serializers.DecimalField(**_PER_MILLION, help_text="USD per million input tokens.")
    output_per_million = serializers.DecimalField(**_PER_MILLION, help_text="USD per million output tokens.")
    cached_input_per_million = serializers.DecimalField(
        **_PER_MILLION,
        required=False,
        allow_null=True,
        default=None,
        help_text="USD per million cached input tokens; null charges them at the input price.",
    )
    owner_field = ""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["effective_from"] = attrs.get("effective_from") or timezone.now()
        rows = self.Meta.model.objects.filter(**{self.owner_field: attrs[self.owner_field]})
        if rows.filter(effective_from=attrs["effective_from"]).exists():
            raise serializers.ValidationError({"effective_from": "A price already starts at this time."})
        return attrs


class PriceSerializer(_PerMillionSerializer):
    model = serializers.SlugRelatedField(
        source="route",
        slug_field="public_id",
        queryset=PublicModel.objects.all(),
        help_text="The public model id the price is for.",
    )
    owner_field = "route"

    class Meta:
        model = Price
        fields = ["id", "model", "effective_from", *PER_MILLION_FIELDS]
        validators: list[Any] = []  # the one-price-per-instant rule is checked in validate(), with its own message


class DeploymentPriceSerializer(_PerMillionSerializer):
    deployment = serializers.PrimaryKeyRelatedField(
        queryset=ModelRoute.objects.all(), help_text="The deployment's id (a model's `deployments[].id`)."
    )
    model = serializers.CharField(source="deployment.model.public_id", read_only=True)
    provider = serializers.CharField(source="deployment.provider.name", read_only=True)
    owner_field = "deployment"

    class Meta:
        model = DeploymentPrice
        fields = ["id", "deployment", "model", "provider", "effective_from", *PER_MILLION_FIELDS]
        validators: list[Any] = []  # as for prices


class PriceFilterSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, help_text="Only this public model id's prices.")


class DeploymentPriceFilterSerializer(serializers.Serializer):
    deployment = RowIdFilter(help_text="Only this deployment's costs.")
    model = serializers.CharField(required=False, help_text="Only the costs of this public model's deployments.")
