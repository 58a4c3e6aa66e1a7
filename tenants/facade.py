"""What the hot path may know about tenants and keys: frozen values, no models.

`load_key_grants()` queries the database and is called only when the snapshot
is rebuilt, never per request; `authenticate()` works on what it returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tenants.cors import usable_origins
from tenants.keys import digest_matches, is_well_formed, key_prefix
from tenants.models import ApiKey, Tenant
from tenants.services import api_keys_mark_used


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """What a request refused for capacity may do instead of taking the 429 (docs/queueing.md)."""

    mode: str = "off"  # off | wait | async | both
    max_wait: float = 30.0  # seconds in line, or as a job before it expires
    max_depth: int = 100  # requests waiting at once: in line (per process), and as unfinished jobs

    @property
    def waits(self) -> bool:
        return self.mode in ("wait", "both")

    @property
    def defers(self) -> bool:
        """Whether a request asking to respond asynchronously may become a job."""
        return self.mode in ("async", "both")


# Most keys: nothing queues, and every grant shares this one value.
QUEUE_OFF = QueuePolicy()


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """An active key of an active tenant, as the hot path sees it."""

    key_id: int
    prefix: str
    tenant_id: int
    tenant_slug: str
    digest: str
    expires_at: float | None  # epoch seconds
    # None means every model; otherwise the public model ids this key may call.
    allowed_models: frozenset[str] | None
    queue: QueuePolicy = QUEUE_OFF
    # Whether /v1/models adds Portico's description of each model to OpenAI's four fields (the tenant's choice).
    describe_models: bool = True
    # The browser origins the tenant lets call with this key (exact, or "*"); empty: no CORS headers.
    cors_origins: frozenset[str] = frozenset()

    def may_use(self, model_id: str) -> bool:
        return self.allowed_models is None or model_id in self.allowed_models

    def __repr__(self) -> str:  # the digest stays out of logs and tracebacks
        return f"KeyGrant(key_id={self.key_id}, tenant={self.tenant_slug!r})"


def load_key_grants() -> dict[str, KeyGrant]:
    """Every usable key, by prefix. Inactive keys and keys of inactive tenants are left out."""
    keys = (
        ApiKey.objects.filter(active=True, tenant__active=True)
        .select_related("tenant")
        .prefetch_related("allowed_models", "tenant__allowed_models")
    )
    grants: dict[str, KeyGrant] = {}
    origins: dict[int, frozenset[str]] = {}  # one set per tenant, shared by its keys
    for api_key in keys:
        tenant = api_key.tenant
        if tenant.pk not in origins:
            origins[tenant.pk] = usable_origins(tenant.cors_origins)
        tenant_models = _limit(tenant.models_restricted, tenant.allowed_models.all())
        key_models = _limit(api_key.models_restricted, api_key.allowed_models.all())
        grants[api_key.prefix] = KeyGrant(
            key_id=api_key.pk,
            prefix=api_key.prefix,
            tenant_id=api_key.tenant_id,
            tenant_slug=api_key.tenant.slug,
            digest=api_key.digest,
            expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
            allowed_models=_narrow(tenant_models, key_models),
            queue=_queue_policy(tenant, api_key),
            describe_models=tenant.describe_models,
            cors_origins=origins[tenant.pk],
        )
    return grants


def _queue_policy(tenant: Tenant, api_key: ApiKey) -> QueuePolicy:
    """The tenant's queue policy, with whatever the key sets of its own."""
    policy = QueuePolicy(
        mode=api_key.queue_mode or tenant.queue_mode,
        max_wait=float(api_key.queue_max_wait or tenant.queue_max_wait),
        max_depth=api_key.queue_max_depth or tenant.queue_max_depth,
    )
    return QUEUE_OFF if policy == QUEUE_OFF else policy


class _Named(Protocol):
    public_id: str


def _limit(restricted: bool, models: Iterable[_Named]) -> frozenset[str] | None:
    return frozenset(model.public_id for model in models) if restricted else None


def _narrow(tenant_models: frozenset[str] | None, key_models: frozenset[str] | None) -> frozenset[str] | None:
    """What a key may call: its tenant's limit, narrowed by its own; None is no limit."""
    if tenant_models is not None and key_models is not None:
        return tenant_models & key_models
    return tenant_models if tenant_models is not None else key_models


def authenticate(grants: dict[str, KeyGrant], presented: str, now: float) -> KeyGrant | None:
    """The grant for a presented key, or None if it is malformed, unknown, wrong, revoked or expired."""
    if not is_well_formed(presented):
        return None
    grant = grants.get(key_prefix(presented))
    if grant is None or not digest_matches(presented, grant.digest):
        return None
    if grant.expires_at is not None and grant.expires_at <= now:
        return None
    return grant


def is_unknown_key(grants: dict[str, KeyGrant], presented: str) -> bool:
    """A well-formed key whose prefix no grant has: perhaps one created since `grants` were loaded."""
    return is_well_formed(presented) and key_prefix(presented) not in grants


def record_key_use(*, last_used: dict[int, datetime]) -> None:
    api_keys_mark_used(last_used=last_used)
