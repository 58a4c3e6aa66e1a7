"""Fixtures shared by every app's tests.

`owner`, `teammate` and `outsider` are the three personas of every
tenant-facing test: a key, another key of the same tenant, and a key of
another tenant.
"""

from __future__ import annotations

import pytest

from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey, make_key, make_tenant


@pytest.fixture
def mock_route(db) -> ModelRoute:
    return make_route(
        provider=make_provider(kind="mock", name="mock"), public_id="mock-echo", upstream_model="mock-echo"
    )


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant(slug="acme")


@pytest.fixture
def owner(tenant) -> IssuedKey:
    return make_key(tenant=tenant, name="owner")


@pytest.fixture
def teammate(tenant) -> IssuedKey:
    return make_key(tenant=tenant, name="teammate")


@pytest.fixture
def outsider(db) -> IssuedKey:
    return make_key(tenant=make_tenant(slug="globex"), name="outsider")
