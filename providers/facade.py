"""What the hot path may know about providers, public models and their deployments: frozen values, no models.

`load_models()` queries the database and decrypts credentials and extra headers;
it is called only when the snapshot is rebuilt, never per request. Each provider's
`redactor` is built there too, once, from its secrets.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from providers.adapters import adapter_for
from providers.adapters.kind_options import with_defaults
from providers.credentials import CredentialUnreadable, decrypt_credential, decrypt_headers
from providers.models import ModelRoute, Provider, PublicModel
from providers.options import DEFAULT_RETRY_ON, ENSEMBLES, RETRY_CLASSES, STRATEGIES
from providers.values import ModelInfo, ProviderInfo, RouteInfo, Target

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
    "Target",
    "load_models",
    "provider_info",
]

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
        base_url=base_url or adapter_for(kind).default_base_url,
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
        options=with_defaults(adapter_for(kind).option_fields, provider.options or {}),  # type: ignore[attr-defined]
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
