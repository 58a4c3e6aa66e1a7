"""Reads on tenants, their models and users' management API tokens."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User

from providers.models import ModelRoute
from tenants.keys import digest_matches
from tenants.models import ManagementToken, Tenant
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


def model_routes_for(*, tenant: Tenant, public_ids: Iterable[str]) -> tuple[list[ModelRoute], list[str], list[str]]:
    """Split `public_ids` into the routes the tenant may use, the ids no route has, and the ids it may not use."""
    wanted = sorted(set(public_ids))
    routes = {route.public_id: route for route in ModelRoute.objects.filter(public_id__in=wanted)}
    unknown = [public_id for public_id in wanted if public_id not in routes]
    forbidden: list[str] = []
    if tenant.models_restricted:
        allowed = set(tenant.allowed_models.filter(public_id__in=wanted).values_list("public_id", flat=True))
        forbidden = [public_id for public_id in routes if public_id not in allowed]
    usable = [route for public_id, route in routes.items() if public_id not in forbidden]
    return usable, unknown, sorted(forbidden)
