"""The management API for a tenant's alert channels (DRF): where its budget alerts go.

Who sees what is decided in `tenants.apis`: a tenant admin manages their
tenants' channels, and another tenant's do not exist for them (404); an
operator sees every channel, the operators' own included (those are made in
the admin). A webhook's signing secret is write-only.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers

from notifications.models import AlertChannel, AlertEvent
from notifications.services import SECRET_MIN_LENGTH, alert_channel_problems, alert_channel_save
from tenants.apis import ManagedTenantField, TenantScopedViewSet

_SETTINGS = ("name", "kind", "emails", "url", "events", "active")


class AlertChannelSerializer(serializers.ModelSerializer):
    tenant = ManagedTenantField(help_text="The tenant whose alerts this channel receives; fixed once created.")
    emails = serializers.ListField(child=serializers.EmailField(), required=False, help_text="Email: the addresses.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=[AlertEvent.BUDGET_SOFT, AlertEvent.BUDGET_HARD]),
        help_text="The alerts this channel receives: budget_soft, budget_hard.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=SECRET_MIN_LENGTH,
        help_text="Webhook: the key of the x-portico-signature HMAC (docs/alerts.md). Never shown back; "
        "leave it out of a change to keep it.",
    )
    has_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = AlertChannel
        fields = ["id", "tenant", *_SETTINGS, "secret", "has_secret", "created_at"]
        read_only_fields = ["id", "has_secret", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        channel = self.instance
        if channel is not None:
            attrs.pop("tenant", None)  # fixed once created
        current = {name: attrs.get(name, getattr(channel, name, "")) for name in ("kind", "url")}
        tenant = channel.tenant if channel is not None else attrs["tenant"]
        problems = alert_channel_problems(
            kind=current["kind"],
            emails=attrs.get("emails", channel.emails if channel is not None else []),
            url=current["url"] or "",
            events=attrs.get("events", channel.events if channel is not None else []),
            tenant_id=tenant.pk if tenant is not None else None,
            has_secret=bool(attrs.get("secret")) or (channel is not None and channel.has_secret),
        )
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


@extend_schema_view(
    list=extend_schema(summary="List alert channels"),
    create=extend_schema(summary="Create an alert channel for a tenant: email addresses or a signed webhook"),
    retrieve=extend_schema(summary="Show an alert channel"),
    partial_update=extend_schema(summary="Change an alert channel"),
    destroy=extend_schema(summary="Delete an alert channel and its deliveries"),
)
class AlertChannelViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """Where a tenant's budget alerts are sent (docs/alerts.md)."""

    queryset = AlertChannel.objects.select_related("tenant").order_by("pk")
    serializer_class = AlertChannelSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer: serializers.Serializer) -> None:
        settings = {name: value for name, value in serializer.validated_data.items() if name != "secret"}
        channel = AlertChannel(**settings)
        serializer.instance = alert_channel_save(channel=channel, secret=serializer.validated_data.get("secret", ""))

    def perform_update(self, serializer: serializers.Serializer) -> None:
        channel = serializer.instance
        for name in _SETTINGS:
            if name in serializer.validated_data:
                setattr(channel, name, serializer.validated_data[name])
        serializer.instance = alert_channel_save(channel=channel, secret=serializer.validated_data.get("secret", ""))
