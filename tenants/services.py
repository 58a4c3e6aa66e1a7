"""Writes on tenants, their API keys and members, and users' management API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tenants.keys import generate_key, key_digest, key_prefix
from tenants.models import ApiKey, ManagementToken, Tenant, TenantMembership, TenantRole
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


class AlreadyMember(ValueError):
    """The user already belongs to the tenant."""


class LastAdmin(ValueError):
    """Removing this membership would leave the tenant without an admin."""


@dataclass(frozen=True)
class Invitation:
    membership: TenantMembership
    # True when the invitation made the user: they have no password yet and need a link to set one.
    new_user: bool


def membership_create(*, tenant: Tenant, user: User, role: str) -> TenantMembership:
    """Give a user a role in a tenant; a second membership of the same pair is an IntegrityError."""
    return TenantMembership.objects.create(tenant=tenant, user=user, role=TenantRole(role))


@transaction.atomic
def membership_invite(*, tenant: Tenant, email: str, role: str) -> Invitation:
    """Add the user with this email to a tenant, making them (with no usable password) if there is none.

    The email is the new user's username too, so one person is found again by either.
    """
    users = get_user_model().objects
    email = users.normalize_email(email)
    user = users.filter(Q(email__iexact=email) | Q(username=email)).order_by("pk").first()
    new_user = user is None
    if user is None:
        user = users.create_user(username=email, email=email, password=None)
    elif TenantMembership.objects.filter(tenant=tenant, user=user).exists():
        raise AlreadyMember(email)
    return Invitation(membership=membership_create(tenant=tenant, user=user, role=role), new_user=new_user)


@transaction.atomic
def membership_remove(*, membership: TenantMembership) -> None:
    """Remove a member, never the tenant's last admin (LastAdmin)."""
    _lock_tenant_members(membership.tenant_id)
    if membership.role == TenantRole.ADMIN:
        admins = TenantMembership.objects.filter(tenant_id=membership.tenant_id, role=TenantRole.ADMIN)
        if not admins.exclude(pk=membership.pk).exists():
            raise LastAdmin(str(membership.user))
    membership.delete()


def _lock_tenant_members(tenant_id: int) -> None:
    """Serialises changes to one tenant's members, so two admins removing each other cannot both succeed."""
    Tenant.objects.select_for_update().only("pk").get(pk=tenant_id)
