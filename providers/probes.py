"""Active health checks of deployments, and the bounded concurrent model-list calls they share with discovery.

A check calls each provider's model list once per run and records the outcome
on every active deployment of that provider. Every kind has a list, so no
check spends tokens:

    openai (and compatible)   GET {base}/models
    anthropic                 GET {base}/models?limit=1000, with x-api-key and anthropic-version
    ollama                    GET {base}/api/tags
    azure                     GET {base}/openai/models?api-version=...
    gemini                    GET {base}/v1beta/models?pageSize=1000, with x-goog-api-key
    cohere                    GET {base}/v1/models?endpoint=chat&page_size=1000
    replicate                 GET {base}/v1/models
    mock                      answered in-process

It proves the address, TLS, the credential and the server's health, not that
one model answers; Azure's list names the resource's models, not its
deployments. A deployment whose model the list does not name is still healthy,
and its detail says so, except on Replicate: its list is one page of all of
Replicate's public models, so a model missing from it says nothing.

The outcomes feed the routing breakers through `PORTICO_HEALTH_PROBE_SINK`
(gateway.health_probes): providers sits below the gateway and does not know it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from providers.credentials import CredentialUnreadable
from providers.facade import ProviderInfo, provider_info
from providers.http import ProbeResult, probe_models
from providers.models import DeploymentProbe, ModelRoute

# Providers called at once; the rest wait for a free slot.
CONCURRENCY = 8
# Kinds whose model list is a sample of a public catalogue rather than what the provider serves.
SAMPLED_LISTS = frozenset({"replicate"})
_DETAIL_MAX = 300  # DeploymentProbe.detail


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    result: ProbeResult
    latency: float  # seconds


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment's check, as the breakers take it."""

    deployment_id: int
    name: str  # provider/upstream model, as breakers and the ledger name a deployment
    ok: bool
    latency: float  # seconds
    reason: str  # Portico's name for the failure; "" when ok
    failures_in_a_row: int  # this check included; 0 when ok


async def providers_check(providers: Sequence[ProviderInfo], *, within: float) -> dict[int, ProviderCheck]:
    """Call each provider's model list once, `CONCURRENCY` at a time, none for longer than `within` seconds."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def check(provider: ProviderInfo) -> tuple[int, ProviderCheck]:
        capped = replace(
            provider,
            connect_timeout=min(provider.connect_timeout, within),
            read_timeout=min(provider.read_timeout, within),
            total_timeout=min(provider.total_timeout, within),
        )
        async with slots:
            started = time.monotonic()
            result = await probe_models(capped)
            return provider.id, ProviderCheck(result, time.monotonic() - started)

    return dict(await asyncio.gather(*(check(provider) for provider in providers)))


def deployment_probes_run() -> list[DeploymentHealth]:
    """Check every active deployment of an active model and provider; record and return the outcomes."""
    deployments = list(
        ModelRoute.objects.filter(active=True, provider__active=True, model__active=True)
        .select_related("provider", "model")
        .order_by("pk")
    )
    infos: dict[int, ProviderInfo] = {}
    for deployment in deployments:
        if deployment.provider_id not in infos:
            try:
                infos[deployment.provider_id] = provider_info(deployment.provider)
            except CredentialUnreadable:
                pass  # recorded as a failure below
    checks = async_to_sync(providers_check)(list(infos.values()), within=settings.PORTICO_HEALTH_PROBE_TIMEOUT)
    now = timezone.now()
    rows = [_row(deployment, checks.get(deployment.provider_id), now) for deployment in deployments]
    with transaction.atomic():
        DeploymentProbe.objects.bulk_create(rows)
        in_a_row = {deployment.pk: _keep_newest(deployment.pk) for deployment in deployments}
    return [
        DeploymentHealth(
            deployment_id=row.deployment_id,
            name=deployment.name,
            ok=row.ok,
            latency=row.latency_ms / 1000,
            reason=row.reason,
            failures_in_a_row=in_a_row[deployment.pk],
        )
        for deployment, row in zip(deployments, rows, strict=True)
    ]


def _row(deployment: ModelRoute, check: ProviderCheck | None, now: datetime) -> DeploymentProbe:
    if check is None:
        return DeploymentProbe(
            deployment=deployment,
            probed_at=now,
            ok=False,
            latency_ms=0,
            reason="credential_unreadable",
            detail="the provider's credential cannot be decrypted with this PORTICO_CREDENTIAL_KEY",
        )
    result = check.result
    detail = result.summary
    if result.ok and _unlisted(deployment, result.model_ids):
        detail += f"; {deployment.upstream_model} is not among them"
    return DeploymentProbe(
        deployment=deployment,
        probed_at=now,
        ok=result.ok,
        latency_ms=round(check.latency * 1000),
        reason=result.reason,
        detail=detail[:_DETAIL_MAX],
    )


def _unlisted(deployment: ModelRoute, model_ids: tuple[str, ...]) -> bool:
    """Whether the provider's list leaves out the deployment's model, where that says something."""
    kind = deployment.provider.kind
    if not model_ids or kind in SAMPLED_LISTS:
        return False
    model = deployment.upstream_model
    if kind == "gemini":
        # A route may name a Gemini model as Gemini lists it, `models/…`; the list's ids are bare.
        model = model.removeprefix("models/")
    return model not in model_ids


def _keep_newest(deployment_id: int) -> int:
    """Delete all but the newest PORTICO_HEALTH_PROBE_HISTORY checks of a deployment; return how many of the
    newest failed in a row."""
    recent = list(
        DeploymentProbe.objects.filter(deployment_id=deployment_id)
        .order_by("-probed_at", "-id")
        .values_list("pk", "ok")
    )
    kept = settings.PORTICO_HEALTH_PROBE_HISTORY
    if len(recent) > kept:
        DeploymentProbe.objects.filter(pk__in=[pk for pk, _ in recent[kept:]]).delete()
    failures = 0
    for _, ok in recent[:kept]:
        if ok:
            break
        failures += 1
    return failures
