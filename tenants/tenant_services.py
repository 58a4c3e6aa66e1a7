"""Writes on a tenant's own settings: what the management API, `portico createtenant` and setup files change.

A tenant is never deleted here: its keys, ledger rows and alerts name it, so
retiring one deactivates it (every key is refused) and keeps its history.

A tenant's model list has three states, and all three survive a round trip
through the API or a setup file: None (every active model), a list (only those),
and an empty list (no model: what is left once every allowed model was deleted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from providers.models import PublicModel
from tenants.models import Tenant
from tenants.services import QUEUE_POLICY_FIELDS, queue_policy_set, tenant_create, tenant_set_models

# The settings a tenant is created and changed with, besides its model list.
TENANT_FIELDS = ("name", "slug", "active", "describe_models", "cors_origins", *QUEUE_POLICY_FIELDS)


@transaction.atomic
def tenant_add(*, name: str, slug: str, fields: dict[str, Any] | None = None) -> Tenant:
    """A tenant with `fields` (TENANT_FIELDS, and `allowed_models`) set beyond tenant_create's defaults."""
    # tenant_create inserts at once: a taken or malformed slug is refused here rather than by the database.
    Tenant(name=name, slug=slug).full_clean()
    tenant = tenant_create(name=name, slug=slug)
    return tenant_update(tenant=tenant, fields=fields or {})


@transaction.atomic
def tenant_update(*, tenant: Tenant, fields: dict[str, Any]) -> Tenant:
    """Change a tenant's TENANT_FIELDS; `allowed_models`, if given, is a list of public models or None."""
    unknown = set(fields) - {*TENANT_FIELDS, "allowed_models"}
    if unknown:
        raise ValueError(f"not a tenant setting: {', '.join(sorted(unknown))}")
    settings = {name: value for name, value in fields.items() if name in TENANT_FIELDS}
    policy = {name: settings.pop(name) for name in QUEUE_POLICY_FIELDS if name in settings}
    for name, value in settings.items():
        setattr(tenant, name, value)
    for name, value in policy.items():
        setattr(tenant, name, value)
    # Validated whole (slug format and uniqueness, queue bounds) before anything is saved.
    tenant.full_clean()
    if settings:
        tenant.save(update_fields=list(settings))
    if policy:
        queue_policy_set(owner=tenant, **policy)
    if "allowed_models" in fields:
        tenant_set_allowlist(tenant=tenant, models=fields["allowed_models"])
    return tenant


def tenant_set_allowlist(*, tenant: Tenant, models: Iterable[PublicModel] | None) -> None:
    """Limit a tenant to `models`, none included; None lifts the limit."""
    ids = None if models is None else [model.pk for model in models]
    tenant_set_models(tenant=tenant, model_ids=ids or [])
    # tenant_set_models reads an empty list as "no limit"; an empty list given here means "no model".
    restricted = ids is not None
    if tenant.models_restricted != restricted:
        tenant.models_restricted = restricted
        tenant.save(update_fields=["models_restricted"])


def tenant_deactivate(*, tenant: Tenant) -> Tenant:
    """Refuse every key of the tenant from now on, keeping it and its history; `tenant_update` reactivates it."""
    if tenant.active:
        tenant.active = False
        tenant.save(update_fields=["active"])
    return tenant
