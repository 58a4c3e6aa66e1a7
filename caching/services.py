"""Writing cache policies. Each save reaches every server's snapshot through the model's change signals."""

from __future__ import annotations

from typing import Any

from caching.models import CachePolicy
from providers.models import PublicModel
from tenants.models import Tenant


def cache_policy_set(
    *,
    model: PublicModel | None = None,
    tenant: Tenant | None = None,
    enabled: bool = True,
    ttl_seconds: int = 3600,
    charge: str = CachePolicy.Charge.FULL,
    charge_percent: int | None = None,
) -> CachePolicy:
    """Create or replace the policy of one scope (a model, a tenant, or both); validated as the admin validates."""
    fields: dict[str, Any] = {
        "enabled": enabled,
        "ttl_seconds": ttl_seconds,
        "charge": charge,
        "charge_percent": charge_percent,
    }
    policy = CachePolicy.objects.filter(model=model, tenant=tenant).first() or CachePolicy(model=model, tenant=tenant)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    return policy
