"""The management API for tenants and their keys (DRF), and who may see what in it.

Two kinds of callers: operators (staff users) manage every tenant; tenant
admins (users with the admin role in a tenant) manage only their tenants, and another
tenant's objects do not exist for them (404, never 403). Any other user is
refused (403). Serialisers sit next to their views; writes go to
`tenants.services` (and a tenant's own settings to `tenants.tenant_services`).

A tenant's memberships (who may sign in to its portal, and in what role) are
the operators' to set here, as in the console; a tenant's admins invite and
remove members in the portal.

The same goes for models: to a tenant admin, a model their tenant may not use
reads exactly as one that does not exist (`usable_models`), wherever a model
id is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from providers.apis import PublicModelViewSet
from providers.models import PublicModel
from tenants.models import ApiKey, Tenant, TenantMembership, TenantRole
from tenants.selectors import public_models_for, public_models_usable_by
from tenants.serializers import (
    ApiKeyQueuePolicySerializer,
    RowIdFilter,
    TenantChangeSerializer,
    TenantQueuePolicySerializer,
)
from tenants.serializers_members import MembershipSerializer
from tenants.services import (
    QUEUE_POLICY_FIELDS,
    LastAdmin,
    api_key_create,
    api_key_revoke,
    membership_create,
    membership_remove,
    queue_policy_set,
)
from tenants.tenant_services import tenant_add, tenant_deactivate, tenant_update


def is_operator(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_staff)


def tenants_managed_by(user: Any) -> QuerySet[Tenant]:
    """The tenants a user may manage: all of them for an operator, else those naming the user an admin."""
    if is_operator(user):
        return Tenant.objects.all()
    if not user.is_authenticated:
        return Tenant.objects.none()
    return Tenant.objects.filter(memberships__user=user, memberships__role=TenantRole.ADMIN)


def usable_models(*, user: Any, tenant: Tenant, public_ids: Iterable[str]) -> list[PublicModel]:
    """The public models of `public_ids` that `tenant` may use, else a ValidationError naming the others.

    A tenant admin is told only "Unknown model" for both a model that does not exist and one their
    tenant may not use, so they learn nothing of models kept for other tenants; an operator sees which.
    """
    usable, unknown, forbidden = public_models_for(tenant=tenant, public_ids=public_ids)
    if is_operator(user):
        problems = [f"Unknown model: {', '.join(unknown)}."] if unknown else []
        problems += [f"The tenant may not use: {', '.join(forbidden)}."] if forbidden else []
    else:
        hidden = sorted([*unknown, *forbidden])
        problems = [f"Unknown model: {', '.join(hidden)}."] if hidden else []
    if problems:
        raise serializers.ValidationError(problems)
    return usable


class IsOperatorOrTenantAdmin(BasePermission):
    message = "The management API is for operators and tenant admins."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user.is_authenticated:
            return False
        return is_operator(user) or tenants_managed_by(user).exists()


class IsOperatorOrReadingTenantAdmin(IsOperatorOrTenantAdmin):
    """Operators may do anything; tenant admins may only read."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method not in SAFE_METHODS and not is_operator(request.user):
            return False
        return super().has_permission(request, view)


class TenantScopedViewSet(viewsets.GenericViewSet):
    """A viewset whose rows belong to tenants: a tenant admin's queryset holds only their tenants' rows.

    `tenant_lookups` name the paths from a row to its tenant; a row is visible if any of them
    leads to a managed tenant (a budget belongs to a tenant directly or through its key).
    """

    permission_classes = [IsOperatorOrTenantAdmin]
    tenant_lookups: tuple[str, ...] = ("tenant",)

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        user = self.request.user
        if is_operator(user):
            return queryset
        managed = tenants_managed_by(user).values("pk")
        visible = Q()
        for lookup in self.tenant_lookups:
            visible |= Q(**{f"{lookup}__in": managed})
        return queryset.filter(visible)


class ManagedTenantField(serializers.PrimaryKeyRelatedField):
    """A tenant the caller manages; any other id reads as one that does not exist."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(queryset=Tenant.objects.all(), **kwargs)

    def get_queryset(self) -> QuerySet[Tenant]:
        return tenants_managed_by(self.context["request"].user)


class ManagedKeyField(serializers.PrimaryKeyRelatedField):
    """A key of a tenant the caller manages; any other id reads as one that does not exist."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(queryset=ApiKey.objects.all(), **kwargs)

    def get_queryset(self) -> QuerySet[ApiKey]:
        return ApiKey.objects.filter(tenant__in=tenants_managed_by(self.context["request"].user).values("pk"))


@extend_schema_field(serializers.ListField(child=serializers.CharField(), allow_null=True))
class AllowedModelsField(serializers.Field):
    """The public ids of the models a tenant or key is limited to; null when it is not limited."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, owner: Tenant | ApiKey) -> list[str] | None:
        if not owner.models_restricted:
            return None
        return sorted(model.public_id for model in owner.allowed_models.all())


class TenantSerializer(serializers.ModelSerializer):
    allowed_models = AllowedModelsField(help_text="Public model ids the tenant may call; null for every model.")

    class Meta:
        model = Tenant
        fields = [
            "id",
            "name",
            "slug",
            "active",
            "allowed_models",
            "describe_models",
            "cors_origins",
            "created_at",
            *QUEUE_POLICY_FIELDS,
        ]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer):
    allowed_models = AllowedModelsField(
        help_text="Public model ids this key is narrowed to; null for all of its tenant's models."
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "tenant",
            "name",
            "prefix",
            "active",
            "expires_at",
            "allowed_models",
            "created_at",
            "last_used_at",
            "revoked_at",
            *QUEUE_POLICY_FIELDS,
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    tenant = ManagedTenantField()
    name = serializers.CharField(max_length=200)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=list,
        help_text="Public model ids to narrow the key to; empty or left out for all of the tenant's models.",
    )

    def validate_expires_at(self, value: datetime | None) -> datetime | None:
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("The expiry must be in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["allowed_models"] = usable_models(
                user=self.context["request"].user, tenant=attrs["tenant"], public_ids=attrs["allowed_models"]
            )
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"allowed_models": exc.detail}) from None
        return attrs


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The whole key. Shown in this response only, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class KeyFilterSerializer(serializers.Serializer):
    tenant = RowIdFilter(help_text="Only this tenant's keys.")


@extend_schema_view(
    list=extend_schema(summary="List the tenants you manage"),
    retrieve=extend_schema(summary="Show a tenant"),
    create=extend_schema(
        summary="Create a tenant (operators)", request=TenantChangeSerializer, responses={201: TenantSerializer}
    ),
    partial_update=extend_schema(
        summary="Change a tenant's settings (operators)", request=TenantChangeSerializer, responses=TenantSerializer
    ),
    destroy=extend_schema(summary="Deactivate a tenant (operators): its keys are refused, it and its history stay"),
)
class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Tenants. Operators create and change them; a tenant is deactivated, never deleted, as its ledger rows,
    keys and alerts name it. Tenant admins read their own."""

    queryset = Tenant.objects.prefetch_related("allowed_models").order_by("name", "pk")
    serializer_class = TenantSerializer
    permission_classes = [IsOperatorOrReadingTenantAdmin]
    tenant_lookups = ("pk",)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def create(self, request: Request) -> Response:
        given = TenantChangeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        fields = dict(given.validated_data)
        with _as_drf_errors():
            tenant = tenant_add(name=fields.pop("name"), slug=fields.pop("slug"), fields=fields)
        return Response(TenantSerializer(self._reread(tenant)).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        tenant = self.get_object()
        given = TenantChangeSerializer(tenant, data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        with _as_drf_errors():
            tenant_update(tenant=tenant, fields=dict(given.validated_data))
        return Response(TenantSerializer(self._reread(tenant)).data)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        tenant_deactivate(tenant=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _reread(self, tenant: Tenant) -> Tenant:
        return self.get_queryset().get(pk=tenant.pk)  # with its model list as now saved

    @extend_schema(methods=["GET"], summary="Show a tenant's queue policy", responses=TenantQueuePolicySerializer)
    @extend_schema(
        methods=["PATCH"],
        summary="Set a tenant's queue policy (operators)",
        request=TenantQueuePolicySerializer,
        responses=TenantQueuePolicySerializer,
    )
    @action(detail=True, methods=["get", "patch"])
    def queue(self, request: Request, pk: str | None = None) -> Response:
        return _queue_policy(request, self.get_object(), TenantQueuePolicySerializer)


@extend_schema_view(
    list=extend_schema(summary="List API keys", parameters=[KeyFilterSerializer]),
    retrieve=extend_schema(summary="Show an API key"),
)
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API keys. The prefix identifies a key; its secret is shown once, when it is created, and never stored."""

    queryset = ApiKey.objects.prefetch_related("allowed_models").order_by("-created_at", "-pk")
    serializer_class = ApiKeySerializer

    def filter_queryset(self, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.action != "list":
            return queryset
        filters = KeyFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        if "tenant" in filters.validated_data:
            queryset = queryset.filter(tenant_id=filters.validated_data["tenant"])
        return queryset

    @extend_schema(
        summary="Create an API key",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer},
    )
    def create(self, request: Request) -> Response:
        given = ApiKeyCreateSerializer(data=request.data, context=self.get_serializer_context())
        given.is_valid(raise_exception=True)
        data = given.validated_data
        api_key, plaintext = api_key_create(
            tenant=data["tenant"],
            name=data["name"],
            expires_at=data["expires_at"],
            allowed_model_ids=[model.pk for model in data["allowed_models"]],
        )
        api_key.key = plaintext  # type: ignore[attr-defined]  # for this one response only
        response = Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(methods=["GET"], summary="Show a key's own queue policy", responses=ApiKeyQueuePolicySerializer)
    @extend_schema(
        methods=["PATCH"],
        summary="Set a key's own queue policy (operators)",
        request=ApiKeyQueuePolicySerializer,
        responses=ApiKeyQueuePolicySerializer,
    )
    @action(detail=True, methods=["get", "patch"])
    def queue(self, request: Request, pk: str | None = None) -> Response:
        return _queue_policy(request, self.get_object(), ApiKeyQueuePolicySerializer)

    @extend_schema(summary="Revoke an API key", operation_id="keys_revoke", request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        api_key = self.get_object()
        # Revoking twice keeps the first revocation's time: that is when the key stopped working.
        if api_key.revoked_at is None:
            api_key_revoke(api_key=api_key)
        return Response(ApiKeySerializer(api_key).data)


@contextmanager
def _as_drf_errors() -> Iterator[None]:
    """A service's model validation, answered as the serializer's own errors are (400, by field)."""
    try:
        yield
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None


def _queue_policy(request: Request, owner: Any, serializer_class: type[serializers.ModelSerializer]) -> Response:
    """A queue policy is the operator's to set: a tenant admin reads it, and is refused a change (403)."""
    if request.method == "PATCH":
        if not is_operator(request.user):
            raise PermissionDenied("Only operators set queue policies.")
        given = serializer_class(owner, data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        queue_policy_set(owner=owner, **given.validated_data)
    return Response(serializer_class(owner).data)


class ModelViewSet(PublicModelViewSet):
    """Public models. Tenant admins read those their tenants may use; any other is not found (404)."""

    permission_classes = [IsOperatorOrReadingTenantAdmin]

    def readable_by(self, user: Any) -> QuerySet[PublicModel]:
        return public_models_usable_by(tenants=tenants_managed_by(user))


@extend_schema_view(
    list=extend_schema(summary="List a tenant's members and their roles (operators)"),
    create=extend_schema(summary="Give a user a role in a tenant (operators)"),
    destroy=extend_schema(summary="Remove a member from a tenant, never its last admin (operators)"),
)
class TenantMemberViewSet(
    mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """A tenant's people: each a user with a role, as the console's tenant page lists them."""

    serializer_class = MembershipSerializer
    permission_classes = [IsAdminUser]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def tenant(self) -> Tenant:
        return get_object_or_404(Tenant, pk=self.kwargs["tenant_id"])

    def get_queryset(self) -> QuerySet[TenantMembership]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator, with no tenant in its path
            return TenantMembership.objects.none()
        return (
            TenantMembership.objects.filter(tenant=self.tenant())
            .select_related("user")
            .order_by("role", "user__username", "pk")
        )

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        tenant, data = self.tenant(), serializer.validated_data
        if TenantMembership.objects.filter(tenant=tenant, user=data["user"]).exists():
            raise serializers.ValidationError({"user": [f"{data['user']} already belongs to this tenant."]})
        serializer.instance = membership_create(tenant=tenant, user=data["user"], role=data["role"])

    def perform_destroy(self, instance: TenantMembership) -> None:
        try:
            membership_remove(membership=instance)
        except LastAdmin:
            raise serializers.ValidationError(
                [f"{instance.user} is the last admin of {instance.tenant.name}: make another admin first."]
            ) from None
