"""What the hot path may know about providers and model routes: frozen values, no models.

`load_routes()` queries the database and decrypts credentials and extra headers;
it is called only when the snapshot is rebuilt, never per request. Each provider's
`redactor` is built there too, once, from its secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from providers.adapters import adapter_for
from providers.adapters.base import Adapter
from providers.credentials import CredentialUnreadable, decrypt_credential, decrypt_headers
from providers.models import ModelRoute
from providers.redaction import Redactor

logger = logging.getLogger(__name__)

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
    public_id: str
    provider: ProviderInfo
    upstream_model: str
    owned_by: str
    created: int
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]


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
        credential_header=provider.credential_header,  # type: ignore[attr-defined]
    )


def load_routes() -> dict[str, RouteInfo]:
    """Every active route of an active provider, by public model id."""
    routes: dict[str, RouteInfo] = {}
    providers: dict[int, ProviderInfo | None] = {}
    for route in ModelRoute.objects.filter(active=True, provider__active=True).select_related("provider"):
        if route.provider_id not in providers:
            try:
                providers[route.provider_id] = provider_info(route.provider)
            except CredentialUnreadable:
                logger.error("provider %s skipped: its credential cannot be decrypted", route.provider.name)
                providers[route.provider_id] = None
        info = providers[route.provider_id]
        if info is None:
            continue
        routes[route.public_id] = RouteInfo(
            public_id=route.public_id,
            provider=info,
            upstream_model=route.upstream_model,
            owned_by=route.owned_by,
            created=int(route.created_at.timestamp()),
            context_window=route.context_window,
            max_output_tokens=route.max_output_tokens,
            capabilities=frozenset(name for name in CAPABILITIES if getattr(route, f"supports_{name}")),
        )
    return routes
