"""The people of the portal's tests: acme's admin, member and viewer, and globex's admin (the outsider).

acme may use `gpt-4o` and `mini`; `o1` is kept for globex. Each tenant has a
key and a ledger row, so every page has something of acme's to show and
something of globex's that must never appear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing.models import UsageRecord
from billing.tests.factories import make_usage
from providers.models import PublicModel
from providers.tests.factories import make_route
from tenants.models import ApiKey, Tenant, TenantRole
from tenants.services import membership_create, tenant_set_models
from tenants.tests.factories import make_key, make_tenant

PASSWORD = "a long portal passphrase 42"


@dataclass(frozen=True)
class Tenancy:
    tenant: Tenant
    key: ApiKey
    row: UsageRecord


@pytest.fixture
def models(db: None) -> dict[str, PublicModel]:
    return {public_id: make_route(public_id=public_id).model for public_id in ("gpt-4o", "mini", "o1")}


def _tenancy(slug: str, models: list[PublicModel]) -> Tenancy:
    tenant = make_tenant(slug=slug)
    tenant_set_models(tenant=tenant, model_ids=[model.pk for model in models])
    key = make_key(tenant=tenant, name=f"{slug} ci").api_key
    return Tenancy(tenant, key, make_usage(api_key=key, model=models[0].public_id))


@pytest.fixture
def acme(models: dict[str, PublicModel]) -> Tenancy:
    return _tenancy("acme", [models["gpt-4o"], models["mini"]])


@pytest.fixture
def globex(models: dict[str, PublicModel]) -> Tenancy:
    return _tenancy("globex", [models["o1"]])


def _person(username: str, tenant: Tenant, role: str) -> User:
    user = User.objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)
    membership_create(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def people(acme: Tenancy, globex: Tenancy) -> dict[str, User]:
    return {
        TenantRole.ADMIN: _person("ada", acme.tenant, TenantRole.ADMIN),
        TenantRole.MEMBER: _person("mel", acme.tenant, TenantRole.MEMBER),
        TenantRole.VIEWER: _person("vic", acme.tenant, TenantRole.VIEWER),
        "outsider": _person("otto", globex.tenant, TenantRole.ADMIN),
    }


SignedIn = Callable[[str], Client]


@pytest.fixture
def signed_in(people: dict[str, User]) -> SignedIn:
    """A test client signed in as one of `people` (by role, or "outsider")."""

    def client(who: str) -> Client:
        web = Client()
        web.force_login(people[who])
        return web

    return client
