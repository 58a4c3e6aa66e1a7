"""What the hot path may know about providers, public models and their deployments: frozen values, no models.

`load_models()` queries the database and decrypts credentials and extra headers;
it is called only when the snapshot is rebuilt, never per request. Each provider's
`redactor` is built there too, once, from its secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from providers.adapters import adapter_for
from providers.adapters.base import Adapter
from providers.credentials import CredentialUnreadable, decrypt_credential, decrypt_headers
from providers.models import ModelRoute, Provider, PublicModel
from providers.options import DEFAULT_RETRY_ON, ENSEMBLES, RETRY_CLASSES, STRATEGIES
from providers.redaction import Redactor

logger = logging.getLogger(__name__)

__all__ = [
    "CAPABILITIES",
    "DEFAULT_RETRY_ON",
    "ENSEMBLES",
    "RETRY_CLASSES",
    "STRATEGIES",
    "ModelInfo",
    "ProviderInfo",
    "RouteInfo",
    "load_models",
    "provider_info",
]

MOCK_BASE_URL = "http://mock.portico.invalid/v1"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    base_url: str
    credential: str = field(repr=False)
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    # Any value may be a key (some servers take theirs in a custom header): secrets, like the credential.
    extra_headers: dict[str, str] = field(hash=False, compare=False, repr=False)
    # Changes whenever the row changes, so pooled clients are rebuilt for new settings.
    version: float
    api_version: str = ""
    accepts_stream_options: bool = True
    accepts_max_completion_tokens: bool = True
    serves_completions: bool = True
    exact_shapes: bool = False
    # The header the credential goes in; empty for the kind's own (see providers/adapters/headers.py).
    credential_header: str = ""
    # Built from the secrets above, so a copy made with `dataclasses.replace` gets its own.
    redactor: Redactor = field(init=False, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "redactor", Redactor((self.credential, *self.extra_headers.values())))

    @property
    def adapter(self) -> Adapter:
        return adapter_for(self.kind)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One deployment of a public model. The model's promises (window, capabilities) are copied onto it."""

    id: int  # the ModelRoute's primary key: breakers, stats, the ledger and headers name a deployment by it
    public_id: str
    provider: ProviderInfo
    upstream_model: str
    owned_by: str
    created: int
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]
    priority: int = 0  # lower is tried first
    weight: int = 1  # 0: never chosen by `weighted` unless nothing else is left
    max_requests_per_minute: int | None = None
    max_tokens_per_minute: int | None = None
    max_in_flight: int | None = None
    # Whether routing keeps its load and latency figures: only a model with deployments to choose among (or one
    # that hedges) reads them, and a deployment serves one model.
    observed: bool = True
    name: str = field(init=False, default="")  # provider/upstream model: headers, logs and the ledger name it so

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"{self.provider.name}/{self.upstream_model}")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A public model as the hot path serves it: what it promises, how to route it, and its deployments."""

    public_id: str
    owned_by: str
    created: int
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]
    model_family: str  # "" if none
    strategy: str  # one of STRATEGIES
    fallbacks: tuple[str, ...]  # public ids tried in order after every deployment failed
    retry_on: frozenset[str]  # a subset of RETRY_CLASSES
    mid_stream_recovery: bool
    ensemble: str  # "" or one of ENSEMBLES
    timeout: float | None  # the whole call's deadline in seconds; None leaves it to the provider timeouts
    first_byte_timeout: float | None
    stall_timeout: float | None
    routes: tuple[RouteInfo, ...]  # active deployments of active providers, by (priority, id); never empty


CAPABILITIES = (
    "chat",
    "streaming",
    "tools",
    "vision",
    "json_mode",
    "embeddings",
    "moderation",
    "images",
    "transcription",
)


def provider_info(provider: object) -> ProviderInfo:
    """The frozen view of a Provider row (also used by the admin's connection test)."""
    base_url = (getattr(provider, "base_url", "") or "").rstrip("/")
    kind = provider.kind  # type: ignore[attr-defined]
    return ProviderInfo(
        id=provider.pk,  # type: ignore[attr-defined]
        name=provider.name,  # type: ignore[attr-defined]
        kind=kind,
        base_url=base_url or (MOCK_BASE_URL if kind == "mock" else ""),
        credential=decrypt_credential(provider.credential_encrypted),  # type: ignore[attr-defined]
        connect_timeout=provider.connect_timeout,  # type: ignore[attr-defined]
        read_timeout=provider.read_timeout,  # type: ignore[attr-defined]
        total_timeout=provider.total_timeout,  # type: ignore[attr-defined]
        extra_headers=decrypt_headers(provider.extra_headers_encrypted),  # type: ignore[attr-defined]
        version=provider.updated_at.timestamp(),  # type: ignore[attr-defined]
        api_version=provider.api_version,  # type: ignore[attr-defined]
        accepts_stream_options=provider.accepts_stream_options,  # type: ignore[attr-defined]
        accepts_max_completion_tokens=provider.accepts_max_completion_tokens,  # type: ignore[attr-defined]
        serves_completions=provider.serves_completions,  # type: ignore[attr-defined]
        exact_shapes=provider.exact_shapes,  # type: ignore[attr-defined]
        credential_header=provider.credential_header,  # type: ignore[attr-defined]
    )


def load_models() -> dict[str, ModelInfo]:
    """Every active public model with at least one servable deployment, by public id."""
    deployments = (
        ModelRoute.objects.filter(active=True, provider__active=True, model__active=True)
        .select_related("provider", "model")
        .order_by("model_id", "priority", "id")
    )
    providers: dict[int, ProviderInfo | None] = {}
    by_model: dict[int, tuple[PublicModel, list[RouteInfo]]] = {}
    for route in deployments:
        info = _provider(providers, route.provider)
        if info is None:
            continue
        model = route.model
        by_model.setdefault(model.pk, (model, []))[1].append(_route_info(route, model, info))
    return {model.public_id: _model_info(model, _observed(model, routes)) for model, routes in by_model.values()}


def _observed(model: PublicModel, routes: list[RouteInfo]) -> tuple[RouteInfo, ...]:
    if len(routes) == 1 and model.ensemble != "hedge":
        return (replace(routes[0], observed=False),)
    return tuple(routes)


def _provider(cache: dict[int, ProviderInfo | None], provider: Provider) -> ProviderInfo | None:
    """Each provider's frozen view, built once per load; None for one whose secrets cannot be read."""
    if provider.pk not in cache:
        try:
            cache[provider.pk] = provider_info(provider)
        except CredentialUnreadable:
            logger.error("provider %s skipped: its credential cannot be decrypted", provider.name)
            cache[provider.pk] = None
    return cache[provider.pk]


def _capabilities(model: PublicModel) -> frozenset[str]:
    return frozenset(name for name in CAPABILITIES if getattr(model, f"supports_{name}"))


def _route_info(route: ModelRoute, model: PublicModel, provider: ProviderInfo) -> RouteInfo:
    return RouteInfo(
        id=route.pk,
        public_id=model.public_id,
        provider=provider,
        upstream_model=route.upstream_model,
        owned_by=model.owned_by,
        created=int(model.created_at.timestamp()),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        capabilities=_capabilities(model),
        priority=route.priority,
        weight=route.weight,
        max_requests_per_minute=route.max_requests_per_minute,
        max_tokens_per_minute=route.max_tokens_per_minute,
        max_in_flight=route.max_in_flight,
    )


def _model_info(model: PublicModel, routes: tuple[RouteInfo, ...]) -> ModelInfo:
    return ModelInfo(
        public_id=model.public_id,
        owned_by=model.owned_by,
        created=int(model.created_at.timestamp()),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        capabilities=routes[0].capabilities,
        model_family=model.model_family,
        strategy=model.strategy,
        fallbacks=tuple(model.fallbacks or ()),
        retry_on=frozenset(model.retry_on or ()),
        mid_stream_recovery=model.mid_stream_recovery,
        ensemble=model.ensemble,
        timeout=model.timeout,
        first_byte_timeout=model.first_byte_timeout,
        stall_timeout=model.stall_timeout,
        routes=routes,
    )
