"""The management API for providers and public models (DRF).

Providers and model-list sources are for operators (staff) only. Public models are for operators to
change; `tenants.apis` widens their reading to tenant admins, who see only the
models their tenants may use and nothing of who serves them. Writes go to
`providers.services`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from providers.model_lists.services import (
    model_list_source_create,
    model_list_source_refresh,
    model_list_source_update,
)
from providers.models import ModelListSource, Provider, PublicModel
from providers.removals import ProviderInUse, model_list_source_delete, provider_delete, public_model_delete
from providers.serializers import (
    ModelListRefreshSerializer,
    ModelListSourceSerializer,
    ProviderSerializer,
    PublicModelSerializer,
    PublicModelSummarySerializer,
)
from providers.services import (
    provider_create,
    provider_update,
    public_model_create,
    public_model_update,
)


def _as_drf(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


def is_operator(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_staff)


@extend_schema_view(
    list=extend_schema(summary="List providers"),
    create=extend_schema(summary="Register a provider"),
    retrieve=extend_schema(summary="Show a provider"),
    update=extend_schema(summary="Replace a provider's settings"),
    partial_update=extend_schema(summary="Change a provider's settings"),
    destroy=extend_schema(summary="Delete a provider that serves no deployment"),
)
class ProviderViewSet(viewsets.ModelViewSet):
    """Upstream providers. The credential and extra headers are write-only: only whether they are set comes back."""

    queryset = Provider.objects.order_by("name", "pk")
    serializer_class = ProviderSerializer
    permission_classes = [IsAdminUser]

    def perform_create(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        try:
            serializer.instance = provider_create(
                credential=data.pop("credential", ""), extra_headers=data.pop("extra_headers", None), **data
            )
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_update(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        secrets = {"credential": data.pop("credential", None), "extra_headers": data.pop("extra_headers", None)}
        try:
            serializer.instance = provider_update(provider=serializer.instance, fields=data, **secrets)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_destroy(self, instance: Provider) -> None:
        try:
            provider_delete(provider=instance)
        except ProviderInUse:
            raise serializers.ValidationError(
                "This provider serves deployments: delete or move them first, or make it inactive."
            ) from None


@extend_schema_view(
    list=extend_schema(summary="List public models", responses=PublicModelSerializer(many=True)),
    create=extend_schema(summary="Create a public model with its deployments"),
    retrieve=extend_schema(summary="Show a public model", responses=PublicModelSerializer),
    update=extend_schema(summary="Replace a public model and its deployments"),
    partial_update=extend_schema(summary="Change a public model; deployments, if given, are its whole set"),
    destroy=extend_schema(summary="Delete a public model, its deployments and prices"),
)
class PublicModelViewSet(viewsets.ModelViewSet):
    """Public models: the ids tenants call, and the deployments that serve them.

    Operators see and change everything. Who else may read is for a subclass to say
    (`readable_by`); they get the summary, without deployments, strategy or fallbacks.
    """

    queryset = PublicModel.objects.prefetch_related("deployments__provider").order_by("public_id", "pk")
    permission_classes = [IsAdminUser]

    def readable_by(self, user: Any) -> QuerySet[PublicModel]:
        return PublicModel.objects.none()

    def get_queryset(self) -> QuerySet[PublicModel]:
        queryset = super().get_queryset()
        user = self.request.user
        return queryset if is_operator(user) else queryset.filter(pk__in=self.readable_by(user).values("pk"))

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return PublicModelSerializer if is_operator(self.request.user) else PublicModelSummarySerializer

    def perform_create(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        try:
            serializer.instance = public_model_create(**data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_update(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        deployments = data.pop("deployments", None)
        try:
            public_model_update(model=serializer.instance, fields=data, deployments=deployments)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None
        serializer.instance = self.get_queryset().get(pk=serializer.instance.pk)  # with its new deployments

    def perform_destroy(self, instance: PublicModel) -> None:
        public_model_delete(model=instance)


@extend_schema_view(
    list=extend_schema(summary="List model-list sources"),
    create=extend_schema(summary="Add a model-list source"),
    retrieve=extend_schema(summary="Show a model-list source"),
    update=extend_schema(summary="Replace a model-list source's settings"),
    partial_update=extend_schema(summary="Change a model-list source's settings"),
    destroy=extend_schema(summary="Delete a model-list source; the models it made stay, unmanaged"),
)
class ModelListSourceViewSet(viewsets.ModelViewSet):
    """JSON lists of models applied to the registry on a schedule (docs/model-lists.md). The credential is
    write-only: only whether it is set comes back."""

    queryset = ModelListSource.objects.order_by("name", "pk")
    serializer_class = ModelListSourceSerializer
    permission_classes = [IsAdminUser]

    def perform_create(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        try:
            serializer.instance = model_list_source_create(credential=data.pop("credential", ""), **data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_update(self, serializer: serializers.Serializer) -> None:
        data = dict(serializer.validated_data)
        credential = data.pop("credential", None)
        try:
            serializer.instance = model_list_source_update(
                source=serializer.instance, fields=data, credential=credential
            )
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_destroy(self, instance: ModelListSource) -> None:
        model_list_source_delete(source=instance)

    @extend_schema(
        summary="Read the list now and apply it",
        request=None,
        responses=ModelListRefreshSerializer,
        description="Answers the refresh as recorded: `status` ok, partial (some entries not applied: "
        "`entry_errors`) or failed (the list could not be read: `error`; nothing changed), and the `diff`.",
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        refresh = model_list_source_refresh(source=self.get_object())
        return Response(ModelListRefreshSerializer(refresh).data)

    @extend_schema(summary="The source's refreshes, newest first", responses=ModelListRefreshSerializer(many=True))
    @action(detail=True, methods=["get"])
    def refreshes(self, request: Request, pk: str | None = None) -> Response:
        rows = self.get_object().refreshes.order_by("-started_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ModelListRefreshSerializer(page, many=True).data)
