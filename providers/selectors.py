"""Reads on providers for operators: discovered models not yet routed, and deployments with their latest check."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from providers.models import DeploymentProbe, DiscoveredModel, ModelRoute


def discovered_models_with_routing() -> QuerySet[DiscoveredModel]:
    """Every discovered model, each with `routed`: whether a deployment on its provider serves it."""
    served = ModelRoute.objects.filter(provider=OuterRef("provider"), upstream_model=OuterRef("upstream_id"))
    return DiscoveredModel.objects.select_related("provider").annotate(routed=Exists(served))


@dataclass(frozen=True, slots=True)
class DeploymentCheck:
    deployment: ModelRoute  # with its provider and model
    probe: DeploymentProbe | None  # the latest health check; None before the first


def deployments_with_latest_probe() -> list[DeploymentCheck]:
    """Every deployment, by provider then model, with its latest health check: three queries in all."""
    latest = DeploymentProbe.objects.filter(deployment=OuterRef("pk")).order_by("-probed_at", "-id").values("pk")[:1]
    deployments = list(
        ModelRoute.objects.select_related("provider", "model")
        .annotate(latest_probe_id=Subquery(latest))
        .order_by("provider__name", "model__public_id", "priority", "pk")
    )
    ids = [deployment.latest_probe_id for deployment in deployments if deployment.latest_probe_id]
    probes = DeploymentProbe.objects.in_bulk(ids)
    return [DeploymentCheck(deployment, probes.get(deployment.latest_probe_id)) for deployment in deployments]
