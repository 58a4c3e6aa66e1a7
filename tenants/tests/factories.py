from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import count

from django.contrib.auth.models import User

from providers.models import ModelRoute
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, management_token_create, tenant_create

_seq = count(1)


def _models_of(deployment_ids: Iterable[int]) -> list[int]:
    """The public models served by these deployments: tests hold what `make_route` returned."""
    return list(ModelRoute.objects.filter(pk__in=list(deployment_ids)).values_list("model_id", flat=True).distinct())


def make_tenant(*, slug: str | None = None, allowed_model_ids: Iterable[int] = ()) -> Tenant:
    """A tenant limited, if `allowed_model_ids` (deployment ids) are given, to the public models they serve."""
    slug = slug or f"tenant-{next(_seq)}"
    return tenant_create(name=slug.title(), slug=slug, allowed_model_ids=_models_of(allowed_model_ids))


@dataclass
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def make_key(
    *,
    tenant: Tenant | None = None,
    name: str = "test key",
    expires_at: datetime | None = None,
    allowed_model_ids: Iterable[int] = (),
) -> IssuedKey:
    """A key, narrowed (as for make_tenant) to the public models the deployments of `allowed_model_ids` serve."""
    api_key, plaintext = api_key_create(
        tenant=tenant or make_tenant(),
        name=name,
        expires_at=expires_at,
        allowed_model_ids=_models_of(allowed_model_ids),
    )
    return IssuedKey(api_key, plaintext)


def management_token_headers(user: User, *, scheme: str = "Token") -> dict[str, str]:
    """Headers that authenticate as `user` to the management API, with a token made for them (or a new one)."""
    _token, plaintext = management_token_create(user=user, replace=True)
    return {"Authorization": f"{scheme} {plaintext}"}
