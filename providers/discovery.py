"""Discovery: the models each provider's own list names, kept as `DiscoveredModel` rows.

    openai (and compatible)   GET {base}/models
    anthropic                 GET {base}/models, with its headers
    ollama                    GET {base}/api/tags
    gemini                    GET {base}/v1beta/models?pageSize=1000, with x-goog-api-key
    cohere                    GET {base}/v1/models?endpoint=chat&page_size=1000

Azure is not discovered: its data-plane list names the models the resource
could deploy, not the deployments a route calls by name, and listing those
takes Azure's management API and another credential. Nor is Replicate: its
list is the first page of every public model on Replicate, most recently
updated first, so what it names changes with other people's uploads, not with
what the account serves. The mock has nothing to discover.

A discovered model routes nothing by itself. An operator routes one
(`discovered_model_route`, the admin's action): a public model of the same id
with one deployment on the provider, no tenant price and no provider cost
(calls are free until the operator adds them, and the admin says so).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.credentials import CredentialUnreadable
from providers.facade import ProviderInfo, provider_info
from providers.models import DiscoveredModel, ModelRoute, Provider, PublicModel
from providers.probes import providers_check

logger = logging.getLogger(__name__)

DISCOVERABLE_KINDS = ("openai", "anthropic", "ollama", "gemini", "cohere")
# A list longer than this is cut short (no provider serves that many models); ids past PublicModel's length too.
MODELS_KEPT = 10_000
_ID_MAX = 200


class ModelTaken(Exception):
    """Routing a discovered model would touch a public model or deployment that exists."""


@dataclass(frozen=True, slots=True)
class DiscoveryOutcome:
    provider: str
    ok: bool
    summary: str
    new: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()


def discovery_run(*, provider_ids: Iterable[int] | None = None) -> list[DiscoveryOutcome]:
    """Read the model list of every active provider of a discoverable kind (or of those given); a provider
    that cannot be read keeps what was discovered before."""
    providers = Provider.objects.filter(active=True, kind__in=DISCOVERABLE_KINDS).order_by("pk")
    if provider_ids is not None:
        providers = providers.filter(pk__in=list(provider_ids))
    infos: dict[int, ProviderInfo] = {}
    outcomes: list[DiscoveryOutcome] = []
    for provider in providers:
        try:
            infos[provider.pk] = provider_info(provider)
        except CredentialUnreadable:
            outcomes.append(DiscoveryOutcome(provider.name, False, "the credential cannot be decrypted"))
    checks = async_to_sync(providers_check)(list(infos.values()), within=settings.PORTICO_HEALTH_PROBE_TIMEOUT)
    now = timezone.now()
    for provider_id, check in checks.items():
        name = infos[provider_id].name
        if not check.result.ok:
            logger.warning("discovery of %s failed: %s", name, check.result.summary)
            outcomes.append(DiscoveryOutcome(name, False, check.result.summary))
            continue
        new, gone = discovered_models_record(provider_id=provider_id, upstream_ids=check.result.model_ids, now=now)
        outcomes.append(DiscoveryOutcome(name, True, check.result.summary, new, gone))
    return outcomes


@transaction.atomic
def discovered_models_record(
    *, provider_id: int, upstream_ids: Iterable[str], now: datetime
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a provider lists now: new models added, listed ones seen, missing ones marked gone. Returns the
    ids new to it and those gone since the last look."""
    listed = sorted({name for name in upstream_ids if 0 < len(name) <= _ID_MAX})[:MODELS_KEPT]
    rows = DiscoveredModel.objects.filter(provider_id=provider_id)
    known = set(rows.values_list("upstream_id", flat=True))
    new = tuple(name for name in listed if name not in known)
    DiscoveredModel.objects.bulk_create(
        DiscoveredModel(provider_id=provider_id, upstream_id=name, first_seen_at=now, last_seen_at=now) for name in new
    )
    rows.filter(upstream_id__in=listed).update(last_seen_at=now, gone=False)
    vanished = rows.filter(gone=False).exclude(upstream_id__in=listed)
    gone = tuple(vanished.values_list("upstream_id", flat=True))
    vanished.update(gone=True)
    return new, gone


@transaction.atomic
def discovered_model_route(*, discovered: DiscoveredModel) -> ModelRoute:
    """A public model of the discovered id with one deployment of it on its provider; no price, no cost.
    Raises ModelTaken when the provider already serves it or the id is another model's."""
    provider, upstream_id = discovered.provider, discovered.upstream_id
    if ModelRoute.objects.filter(provider=provider, upstream_model=upstream_id).exists():
        raise ModelTaken(f"{provider.name} already serves {upstream_id} in a deployment")
    if PublicModel.objects.filter(public_id=upstream_id).exists():
        raise ModelTaken(f"a public model {upstream_id} exists: add a deployment to it instead")
    model = PublicModel(public_id=upstream_id)
    model.full_clean()
    model.save()
    deployment = ModelRoute(model=model, provider=provider, upstream_model=upstream_id)
    deployment.full_clean()
    deployment.save()
    return deployment
