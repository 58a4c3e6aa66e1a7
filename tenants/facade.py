"""What the hot path may know about tenants and keys: frozen values, no models.

`load_key_grants()` queries the database and is called only when the snapshot
is rebuilt, never per request; `authenticate()` works on what it returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tenants.keys import digest_matches, is_well_formed, key_prefix
from tenants.models import ApiKey
from tenants.services import api_keys_mark_used


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
    for api_key in keys:
        tenant = api_key.tenant
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
        )
    return grants


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


def record_key_use(*, last_used: dict[int, datetime]) -> None:
    api_keys_mark_used(last_used=last_used)
