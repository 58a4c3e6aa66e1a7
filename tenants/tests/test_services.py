from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.keys import KEY_LENGTH, key_digest, key_prefix
from tenants.models import ApiKey
from tenants.services import (
    api_key_create,
    api_key_issue_secret,
    api_key_revoke,
    api_keys_mark_used,
    tenant_create,
)

pytestmark = pytest.mark.django_db


def test_tenant_create_stores_its_model_allowlist():
    route = make_route(public_id="gpt-4o")

    tenant = tenant_create(name="Acme", slug="acme", allowed_model_ids=[route.model_id])

    assert list(tenant.allowed_models.values_list("public_id", flat=True)) == ["gpt-4o"]


def test_api_key_create_returns_a_plaintext_that_is_never_stored(tenant):
    api_key, plaintext = api_key_create(tenant=tenant, name="ci")

    stored = ApiKey.objects.get(pk=api_key.pk)
    assert len(plaintext) == KEY_LENGTH
    assert stored.prefix == key_prefix(plaintext)
    assert stored.digest == key_digest(plaintext)
    assert plaintext not in {stored.prefix, stored.digest, stored.name}


def test_api_key_create_narrows_the_key_to_the_given_models(tenant):
    route = make_route(public_id="gpt-4o")
    make_route(public_id="gpt-4o-mini")

    _, plaintext = api_key_create(tenant=tenant, name="ci", allowed_model_ids=[route.model_id])

    grant = authenticate(load_key_grants(), plaintext, time.time())
    assert grant is not None
    assert grant.allowed_models == frozenset({"gpt-4o"})


def test_api_key_create_stores_the_expiry(tenant):
    expires_at = datetime.now(UTC) + timedelta(days=3)

    api_key, _ = api_key_create(tenant=tenant, name="ci", expires_at=expires_at)

    assert ApiKey.objects.get(pk=api_key.pk).expires_at == expires_at


def test_api_key_issue_secret_fills_in_prefix_and_digest_without_saving(tenant):
    api_key = ApiKey(tenant=tenant, name="admin-made")

    plaintext = api_key_issue_secret(api_key=api_key)

    assert (api_key.prefix, api_key.digest) == (key_prefix(plaintext), key_digest(plaintext))
    assert api_key.pk is None


def test_api_key_revoke_stops_only_that_key(owner, teammate, outsider):
    api_key_revoke(api_key=owner.api_key)

    grants = load_key_grants()
    now = time.time()
    assert authenticate(grants, owner.plaintext, now) is None
    assert authenticate(grants, teammate.plaintext, now) is not None
    assert authenticate(grants, outsider.plaintext, now) is not None


def test_api_key_revoke_records_when(owner):
    api_key_revoke(api_key=owner.api_key)

    stored = ApiKey.objects.get(pk=owner.api_key.pk)
    assert stored.active is False
    assert stored.revoked_at is not None


def test_api_keys_mark_used_stores_last_used_times(owner, teammate):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    api_keys_mark_used(last_used={owner.api_key.pk: when})

    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at == when
    assert ApiKey.objects.get(pk=teammate.api_key.pk).last_used_at is None


def test_a_key_of_an_inactive_tenant_does_not_authenticate(owner):
    owner.api_key.tenant.active = False
    owner.api_key.tenant.save()

    assert authenticate(load_key_grants(), owner.plaintext, time.time()) is None
