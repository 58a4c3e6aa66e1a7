"""The frozen values the hot path trades in: a provider, one deployment of a public model, one request's target.

This module imports no adapter, so adapters may type their arguments with these values
(`Target.provider` is a `ProviderInfo`) without an import cycle. `providers/facade.py`
builds them from the database when the snapshot is rebuilt, never per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers.redaction import Redactor

if TYPE_CHECKING:
    from providers.adapters.base import Adapter

__all__ = ["ModelInfo", "ProviderInfo", "RouteInfo", "Target"]


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
    # The kind's own settings (`Provider.options`), every declared one present, defaults filled in.
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Built from the secrets above, so a copy made with `dataclasses.replace` gets its own.
    redactor: Redactor = field(init=False, hash=False, compare=False, repr=False)
    # The kind's adapter, looked up once here so that a request reads an attribute rather than the registry.
    adapter: Adapter = field(init=False, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Imported here, not above: the registry imports every adapter, and the adapters import this module.
        from providers.adapters import adapter_for

        object.__setattr__(self, "redactor", Redactor((self.credential, *self.extra_headers.values())))
        object.__setattr__(self, "adapter", adapter_for(self.kind))


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the provider and the route's names."""

    provider: ProviderInfo
    upstream_model: str
    public_model: str
    # The route's output cap: Anthropic requires `max_tokens`, so it is sent when the client gave none.
    max_output_tokens: int | None = None


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
