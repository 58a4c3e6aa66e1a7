"""The console dashboard's providers panel: each provider and deployment, its health check and its breaker.

Health checks come from the database (`providers.selectors`), breakers from
where the request path keeps them, read as the breaker panel reads them
(gateway/admin.py), each once; a Redis that does not answer is asked no more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.admin import BreakerReader, label, when
from gateway.breakers import CLOSED, BreakerState
from providers.models import DeploymentProbe, ModelRoute, Provider
from providers.selectors import DeploymentCheck


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    deployment: ModelRoute  # with its provider and public model
    active: bool  # it, its provider and its public model all are: it may be routed to
    probe: DeploymentProbe | None  # the latest health check; None before the first
    breaker: str  # its circuit breaker's state, as the breaker panel words it
    tripped: bool  # the breaker is not closed
    last_error: str  # the newest failure the breaker or a health check saw, with its time; "" for none


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    provider: Provider
    deployments: tuple[DeploymentStatus, ...]


@dataclass(frozen=True, slots=True)
class ProvidersPanel:
    providers: tuple[ProviderStatus, ...]
    breakers_unreadable: bool  # Redis did not answer: breakers read as closed, as the request path counts them


def _last_error(state: BreakerState, probe: DeploymentProbe | None) -> str:
    if state.last_errors:
        newest = state.last_errors[0]
        return f"{when(newest.at)}: {newest.reason}"
    if probe is not None and not probe.ok:
        return f"{when(probe.probed_at)}: {' '.join(filter(None, (probe.reason, probe.detail)))}"
    return ""


def providers_panel(checks: Sequence[DeploymentCheck], providers: Iterable[Provider]) -> ProvidersPanel:
    """Every provider with its deployments' health: no query of its own, one breaker read per deployment."""
    reader = BreakerReader()
    by_provider: dict[int, list[DeploymentStatus]] = defaultdict(list)
    for check in checks:
        deployment = check.deployment
        state = reader.state(deployment.pk)
        by_provider[deployment.provider_id].append(
            DeploymentStatus(
                deployment=deployment,
                active=deployment.active and deployment.provider.active and deployment.model.active,
                probe=check.probe,
                breaker=label(state),
                tripped=state.state != CLOSED,
                last_error=_last_error(state, check.probe),
            )
        )
    return ProvidersPanel(
        providers=tuple(ProviderStatus(provider, tuple(by_provider[provider.pk])) for provider in providers),
        breakers_unreadable=reader.unreachable,
    )
