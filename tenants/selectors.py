"""Reads on tenants, their models and admins, and users' management API tokens."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db.models import QuerySet

from providers.models import PublicModel
from tenants.keys import digest_matches
from tenants.models import ManagementToken, Tenant, TenantRole
from tenants.tokens import MAX_TOKEN_LENGTH, token_prefix

# Compared against when no token has the presented prefix, so a miss costs what a hit costs.
_NO_DIGEST = "0" * 64


def management_token_user(*, presented: str) -> User | None:
    """The user a presented token belongs to, or None: found by its prefix, compared in constant time."""
    if not presented or len(presented) > MAX_TOKEN_LENGTH:
        return None
    token = ManagementToken.objects.select_related("user").filter(prefix=token_prefix(presented)).first()
    if token is None:
        digest_matches(presented, _NO_DIGEST)
        return None
    return token.user if digest_matches(presented, token.digest) else None


def public_models_for(*, tenant: Tenant, public_ids: Iterable[str]) -> tuple[list[PublicModel], list[str], list[str]]:
    """Split `public_ids` into the public models the tenant may use, the ids no model has, and those it may not use."""
    wanted = sorted(set(public_ids))
    models = {model.public_id: model for model in PublicModel.objects.filter(public_id__in=wanted)}
    unknown = [public_id for public_id in wanted if public_id not in models]
    forbidden: list[str] = []
    if tenant.models_restricted:
        allowed = set(tenant.allowed_models.filter(public_id__in=wanted).values_list("public_id", flat=True))
        forbidden = [public_id for public_id in models if public_id not in allowed]
    usable = [model for public_id, model in models.items() if public_id not in forbidden]
    return usable, unknown, sorted(forbidden)


def public_models_usable_by(*, tenants: Iterable[Tenant]) -> QuerySet[PublicModel]:
    """The public models any of `tenants` may use: every one for a tenant without a limit."""
    tenants = list(tenants)
    if any(not tenant.models_restricted for tenant in tenants):
        return PublicModel.objects.all()
    return PublicModel.objects.filter(
        pk__in=Tenant.allowed_models.through.objects.filter(tenant__in=tenants).values("publicmodel_id")
    )


def tenant_admins(*, tenant: Tenant) -> QuerySet[User]:
    """The users with the admin role in `tenant`, by username."""
    admins = User.objects.filter(tenant_memberships__tenant=tenant, tenant_memberships__role=TenantRole.ADMIN)
    return admins.order_by("username")
