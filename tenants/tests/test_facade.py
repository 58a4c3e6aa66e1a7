"""The tenants facade: which keys the snapshot holds, what each may call, and who authenticates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.tests.factories import make_route
from tenants.facade import KeyGrant, authenticate, load_key_grants, record_key_use
from tenants.keys import generate_key, key_prefix
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_revoke, tenant_set_models
from tenants.tests.factories import IssuedKey, make_key, make_tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

PERSONAS = ["owner", "teammate", "outsider"]


@pytest.fixture
def personas(owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey) -> dict[str, IssuedKey]:
    return {"owner": owner, "teammate": teammate, "outsider": outsider}


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_authenticates_as_its_own_key(personas: dict[str, IssuedKey], persona: str) -> None:
    issued = personas[persona]

    grant = authenticate(load_key_grants(), issued.plaintext, NOW.timestamp())

    assert grant is not None
    assert grant.key_id == issued.api_key.pk
    assert grant.tenant_id == issued.api_key.tenant_id
    assert grant.tenant_slug == issued.api_key.tenant.slug


def test_the_owner_and_teammate_share_a_tenant_and_the_outsider_does_not(personas: dict[str, IssuedKey]) -> None:
    grants = load_key_grants()
    owner, teammate, outsider = (authenticate(grants, personas[p].plaintext, NOW.timestamp()) for p in PERSONAS)

    assert owner is not None
    assert teammate is not None
    assert outsider is not None
    assert owner.tenant_id == teammate.tenant_id != outsider.tenant_id
    assert owner.key_id != teammate.key_id


@pytest.mark.parametrize(
    "presented",
    ["", "Bearer", "pk-short", "sk-" + "a" * 48, "not a key at all"],
    ids=["empty", "scheme-only", "too-short", "wrong-prefix", "words"],
)
def test_it_refuses_a_malformed_key(personas: dict[str, IssuedKey], presented: str) -> None:
    assert authenticate(load_key_grants(), presented, NOW.timestamp()) is None


def test_it_refuses_the_owners_key_with_a_character_added(owner: IssuedKey) -> None:
    assert authenticate(load_key_grants(), owner.plaintext + "a", NOW.timestamp()) is None


def test_it_refuses_a_well_formed_key_with_an_unknown_prefix(personas: dict[str, IssuedKey]) -> None:
    assert authenticate(load_key_grants(), generate_key(), NOW.timestamp()) is None


def test_it_refuses_the_right_prefix_with_a_wrong_secret(owner: IssuedKey) -> None:
    forged = key_prefix(owner.plaintext) + generate_key()[len(key_prefix(owner.plaintext)) :]

    assert authenticate(load_key_grants(), forged, NOW.timestamp()) is None


def test_it_refuses_the_owners_prefix_with_the_teammates_secret(owner: IssuedKey, teammate: IssuedKey) -> None:
    split = len(key_prefix(owner.plaintext))
    forged = owner.plaintext[:split] + teammate.plaintext[split:]

    assert authenticate(load_key_grants(), forged, NOW.timestamp()) is None


def test_it_refuses_an_expired_key_and_accepts_it_until_then(tenant: Tenant) -> None:
    expires = NOW + timedelta(hours=1)
    issued = make_key(tenant=tenant, expires_at=expires)
    grants = load_key_grants()

    assert authenticate(grants, issued.plaintext, expires.timestamp() - 0.001) is not None
    assert authenticate(grants, issued.plaintext, expires.timestamp()) is None
    assert authenticate(grants, issued.plaintext, expires.timestamp() + 3600) is None


def test_a_grant_carries_the_expiry_in_epoch_seconds(tenant: Tenant) -> None:
    expires = NOW + timedelta(days=30)
    issued = make_key(tenant=tenant, expires_at=expires)

    assert load_key_grants()[issued.api_key.prefix].expires_at == expires.timestamp()


def test_the_snapshot_holds_every_usable_key_by_prefix(personas: dict[str, IssuedKey]) -> None:
    grants = load_key_grants()

    assert set(grants) == {issued.api_key.prefix for issued in personas.values()}


def test_it_leaves_out_a_revoked_key_but_not_its_teammate(owner: IssuedKey, teammate: IssuedKey) -> None:
    api_key_revoke(api_key=owner.api_key)

    grants = load_key_grants()

    assert owner.api_key.prefix not in grants
    assert authenticate(grants, owner.plaintext, NOW.timestamp()) is None
    assert authenticate(grants, teammate.plaintext, NOW.timestamp()) is not None


def test_it_leaves_out_every_key_of_an_inactive_tenant_but_not_the_outsider(personas: dict[str, IssuedKey]) -> None:
    Tenant.objects.filter(pk=personas["owner"].api_key.tenant_id).update(active=False)

    grants = load_key_grants()

    assert set(grants) == {personas["outsider"].api_key.prefix}
    assert authenticate(grants, personas["outsider"].plaintext, NOW.timestamp()) is not None


def test_without_allowlists_a_key_may_use_every_model(owner: IssuedKey) -> None:
    grant = load_key_grants()[owner.api_key.prefix]

    assert grant.allowed_models is None
    assert grant.may_use("anything")


def test_a_tenant_allowlist_applies_to_all_its_keys_and_not_to_the_outsider(
    tenant: Tenant, personas: dict[str, IssuedKey]
) -> None:
    tenant_set_models(tenant=tenant, model_ids=[make_route(public_id=name).model_id for name in ("alpha", "beta")])
    make_route(public_id="gamma")

    grants = load_key_grants()

    for persona in ("owner", "teammate"):
        grant = grants[personas[persona].api_key.prefix]
        assert grant.allowed_models == frozenset({"alpha", "beta"})
        assert grant.may_use("alpha")
        assert not grant.may_use("gamma")
    assert grants[personas["outsider"].api_key.prefix].allowed_models is None


def test_a_key_allowlist_narrows_only_that_key(tenant: Tenant, teammate: IssuedKey) -> None:
    alpha, _ = make_route(public_id="alpha"), make_route(public_id="beta")
    narrowed = make_key(tenant=tenant, allowed_model_ids=[alpha.pk])

    grants = load_key_grants()

    assert grants[narrowed.api_key.prefix].allowed_models == frozenset({"alpha"})
    assert grants[teammate.api_key.prefix].allowed_models is None


def test_a_key_allowlist_within_a_tenant_allowlist_is_their_intersection(tenant: Tenant) -> None:
    alpha, beta, gamma = (make_route(public_id=name) for name in ("alpha", "beta", "gamma"))
    tenant_set_models(tenant=tenant, model_ids=[alpha.model_id, beta.model_id])
    issued = make_key(tenant=tenant, allowed_model_ids=[beta.pk, gamma.pk])

    grant = load_key_grants()[issued.api_key.prefix]

    assert grant.allowed_models == frozenset({"beta"})
    assert not grant.may_use("gamma")  # the key cannot widen what its tenant may use


def test_disjoint_allowlists_allow_nothing(tenant: Tenant) -> None:
    alpha, beta = make_route(public_id="alpha"), make_route(public_id="beta")
    tenant_set_models(tenant=tenant, model_ids=[alpha.model_id])
    issued = make_key(tenant=tenant, allowed_model_ids=[beta.pk])

    grant = load_key_grants()[issued.api_key.prefix]

    assert grant.allowed_models == frozenset()
    assert not grant.may_use("alpha")
    assert not grant.may_use("beta")


def test_deleting_the_only_allowed_model_leaves_the_tenant_and_key_with_none(tenant: Tenant) -> None:
    only, other = make_route(public_id="only"), make_route(public_id="other")
    tenant_set_models(tenant=tenant, model_ids=[only.model_id])
    issued = make_key(tenant=tenant, allowed_model_ids=[only.pk])
    everyone = make_key(tenant=tenant)

    only.model.delete()
    grants = load_key_grants()

    # An emptied allowlist must not turn into "every model".
    assert grants[issued.api_key.prefix].allowed_models == frozenset()
    assert grants[everyone.api_key.prefix].allowed_models == frozenset()
    assert not grants[everyone.api_key.prefix].may_use(other.public_id)


def test_clearing_an_allowlist_on_purpose_lifts_the_limit(tenant: Tenant, owner: IssuedKey) -> None:
    route = make_route(public_id="only")
    tenant_set_models(tenant=tenant, model_ids=[route.model_id])

    tenant_set_models(tenant=tenant, model_ids=[])

    assert load_key_grants()[owner.api_key.prefix].allowed_models is None


def test_loading_grants_takes_the_same_queries_for_one_key_or_many(tenant: Tenant) -> None:
    route = make_route(public_id="alpha")
    tenant_set_models(tenant=tenant, model_ids=[route.model_id])
    make_key(tenant=tenant, allowed_model_ids=[route.pk])
    with CaptureQueriesContext(connection) as one:
        load_key_grants()
    for _ in range(5):
        make_key(tenant=make_tenant(allowed_model_ids=[route.pk]), allowed_model_ids=[route.pk])

    with CaptureQueriesContext(connection) as many:
        assert len(load_key_grants()) == 6

    assert len(many) == len(one)


def test_a_grant_never_shows_its_digest(owner: IssuedKey) -> None:
    grant = load_key_grants()[owner.api_key.prefix]

    for text in (repr(grant), str(grant), f"{grant}", f"{grant!r}"):
        assert grant.digest not in text
        assert owner.plaintext not in text
    assert repr(grant) == f"KeyGrant(key_id={owner.api_key.pk}, tenant='acme')"


def test_a_grant_is_frozen(owner: IssuedKey) -> None:
    grant = load_key_grants()[owner.api_key.prefix]

    with pytest.raises(AttributeError):
        grant.allowed_models = None  # type: ignore[misc]
    assert isinstance(grant, KeyGrant)


def test_recorded_use_is_stored_as_last_used(owner: IssuedKey, teammate: IssuedKey) -> None:
    record_key_use(last_used={owner.api_key.pk: NOW})

    assert ApiKey.objects.get(pk=owner.api_key.pk).last_used_at == NOW
    assert ApiKey.objects.get(pk=teammate.api_key.pk).last_used_at is None
