"""What the hot path knows of cache policies: frozen values, loaded with the snapshot, never per request.

Which policy decides, for a request of tenant T on public model M, the first that exists of:

    1. the policy for M and T together     an operator's exception for one tenant on one model
    2. the policy for T (every model)      a tenant's opt-in or opt-out wins over the model's
    3. the policy for M (every tenant)     the model's default

A disabled policy decides too: it turns caching off for its scope even where a
broader one turns it on. No policy at all: nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from caching.models import CachePolicy

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class CacheRule:
    """What the deciding policy says: whether to cache, for how long, and the share of the price a hit costs."""

    enabled: bool
    ttl: int  # seconds
    percent: int = 100  # the share of the price a hit is charged, 0 to 100

    @property
    def price_factor(self) -> Decimal:
        return Decimal(self.percent) / _HUNDRED


@dataclass(frozen=True, slots=True)
class CachePolicies:
    pairs: dict[tuple[int, str], CacheRule] = field(default_factory=dict)  # by (tenant id, public model id)
    tenants: dict[int, CacheRule] = field(default_factory=dict)
    models: dict[str, CacheRule] = field(default_factory=dict)

    def rule_for(self, tenant_id: int, public_id: str) -> CacheRule | None:
        """The rule of an enabled policy that decides for this tenant and model; None: not cached."""
        if not (self.pairs or self.tenants or self.models):
            return None  # most deployments: no policy, three empty checks and done
        rule = self.pairs.get((tenant_id, public_id)) or self.tenants.get(tenant_id) or self.models.get(public_id)
        return rule if rule is not None and rule.enabled else None


def rule_of(policy: CachePolicy) -> CacheRule:
    if policy.charge == CachePolicy.Charge.FREE:
        percent = 0
    elif policy.charge == CachePolicy.Charge.PERCENT:
        percent = min(policy.charge_percent or 0, 100)
    else:
        percent = 100
    return CacheRule(enabled=policy.enabled, ttl=policy.ttl_seconds, percent=percent)


def load_cache_policies() -> CachePolicies:
    """Every policy, by scope (one query; called when the snapshot is rebuilt)."""
    pairs: dict[tuple[int, str], CacheRule] = {}
    tenants: dict[int, CacheRule] = {}
    models: dict[str, CacheRule] = {}
    for policy in CachePolicy.objects.select_related("model"):
        rule = rule_of(policy)
        public_id = policy.model.public_id if policy.model is not None else None
        if public_id is not None and policy.tenant_id is not None:
            pairs[(policy.tenant_id, public_id)] = rule
        elif policy.tenant_id is not None:
            tenants[policy.tenant_id] = rule
        elif public_id is not None:
            models[public_id] = rule
    return CachePolicies(pairs=pairs, tenants=tenants, models=models)
