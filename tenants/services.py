"""Writes on tenants, their API keys, and users' management API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from tenants.keys import generate_key, key_digest, key_prefix
from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.tokens import generate_token, token_prefix


def tenant_create(*, name: str, slug: str, allowed_model_ids: Iterable[int] = ()) -> Tenant:
    """A tenant, limited to the public models of `allowed_model_ids` (ids of PublicModel rows) if any."""
    tenant = Tenant.objects.create(name=name, slug=slug)
    tenant_set_models(tenant=tenant, model_ids=allowed_model_ids)
    return tenant


def tenant_set_models(*, tenant: Tenant, model_ids: Iterable[int]) -> None:
    """Limit a tenant to these public models, or lift the limit with none."""
    _set_models(tenant, model_ids)


def tenant_models_outside(*, tenant: Tenant, public_ids: Iterable[str]) -> list[str]:
    """Those of `public_ids` the tenant may not use, so a key is never granted more than its tenant."""
    if not tenant.models_restricted:
        return []
    allowed = set(tenant.allowed_models.values_list("public_id", flat=True))
    return sorted(set(public_ids) - allowed)


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    expires_at: datetime | None = None,
    allowed_model_ids: Iterable[int] = (),
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored and cannot be shown again."""
    api_key = ApiKey(tenant=tenant, name=name, expires_at=expires_at)
    plaintext = api_key_issue_secret(api_key=api_key)
    api_key.save()
    api_key_set_models(api_key=api_key, model_ids=allowed_model_ids)
    return api_key, plaintext


def api_key_set_models(*, api_key: ApiKey, model_ids: Iterable[int]) -> None:
    """Narrow a key to these of its tenant's public models, or lift the narrowing with none."""
    _set_models(api_key, model_ids)


def _set_models(owner: Tenant | ApiKey, model_ids: Iterable[int]) -> None:
    ids = list(model_ids)
    owner.allowed_models.set(ids)
    if owner.models_restricted != bool(ids):
        owner.models_restricted = bool(ids)
        owner.save(update_fields=["models_restricted"])


def api_key_issue_secret(*, api_key: ApiKey) -> str:
    """Give an unsaved key a fresh secret whose prefix no other key has; return the plaintext."""
    plaintext = generate_key()
    while ApiKey.objects.filter(prefix=key_prefix(plaintext)).exists():
        plaintext = generate_key()
    api_key.prefix = key_prefix(plaintext)
    api_key.digest = key_digest(plaintext)
    return plaintext


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.active = False
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["active", "revoked_at"])
    return api_key


QUEUE_POLICY_FIELDS = ("queue_mode", "queue_max_wait", "queue_max_depth")


def queue_policy_set(*, owner: Tenant | ApiKey, **policy: str | int | None) -> None:
    """Set a tenant's or a key's queue policy (`queue_mode`, `queue_max_wait`, `queue_max_depth`); every process
    follows it once its snapshot reloads (the save announces the change)."""
    for name, value in policy.items():
        if name not in QUEUE_POLICY_FIELDS:
            raise ValueError(f"not a queue policy field: {name}")
        setattr(owner, name, value)
    owner.save(update_fields=list(policy))


def api_keys_mark_used(*, last_used: dict[int, datetime]) -> None:
    """Store last-used times collected in memory; `update()` keeps this out of the change signals."""
    for key_id, when in last_used.items():
        ApiKey.objects.filter(pk=key_id).update(last_used_at=when)


def management_token_issue_secret(*, token: ManagementToken) -> str:
    """Give an unsaved token a fresh secret whose prefix no other token has; return the plaintext."""
    plaintext = generate_token()
    while ManagementToken.objects.filter(prefix=token_prefix(plaintext)).exists():
        plaintext = generate_token()
    token.prefix = token_prefix(plaintext)
    token.digest = key_digest(plaintext)
    return plaintext


@transaction.atomic
def management_token_create(*, user: User, replace: bool = False) -> tuple[ManagementToken, str]:
    """Give a user a token and return it with its plaintext, which is never stored and cannot be shown again.

    A user has one token; `replace` retires the one they have, else having one is an IntegrityError.
    """
    if replace:
        ManagementToken.objects.filter(user=user).delete()
    token = ManagementToken(user=user)
    plaintext = management_token_issue_secret(token=token)
    token.save()
    return token, plaintext
