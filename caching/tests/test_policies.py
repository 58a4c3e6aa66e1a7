"""Cache policies: the most specific one decides (model and tenant, then tenant, then model), none means off."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from caching.facade import CachePolicies, CacheRule, load_cache_policies
from caching.models import CachePolicy
from caching.services import cache_policy_set
from providers.models import PublicModel
from providers.tests.factories import make_route
from tenants.models import Tenant
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def model() -> PublicModel:
    return make_route(public_id="gpt-cached").model


@pytest.fixture
def other_model() -> PublicModel:
    return make_route(public_id="gpt-elsewhere").model


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant(slug="acme")


@pytest.fixture
def outsider() -> Tenant:
    return make_tenant(slug="globex")


def test_without_any_policy_nothing_is_cached(tenant: Tenant, model: PublicModel) -> None:
    assert load_cache_policies().rule_for(tenant.pk, model.public_id) is None
    assert CachePolicies().rule_for(tenant.pk, model.public_id) is None


def test_a_model_policy_caches_that_model_for_every_tenant(
    tenant: Tenant, outsider: Tenant, model: PublicModel, other_model: PublicModel
) -> None:
    cache_policy_set(model=model, ttl_seconds=120)

    policies = load_cache_policies()

    assert policies.rule_for(tenant.pk, model.public_id) == CacheRule(enabled=True, ttl=120)
    assert policies.rule_for(outsider.pk, model.public_id) is not None
    assert policies.rule_for(tenant.pk, other_model.public_id) is None


def test_a_tenant_policy_wins_over_the_models(
    tenant: Tenant, outsider: Tenant, model: PublicModel, other_model: PublicModel
) -> None:
    cache_policy_set(model=model, ttl_seconds=120)
    cache_policy_set(tenant=tenant, enabled=False)
    cache_policy_set(tenant=outsider, ttl_seconds=30, charge="free")

    policies = load_cache_policies()

    assert policies.rule_for(tenant.pk, model.public_id) is None  # its opt-out beats the model's opt-in
    assert policies.rule_for(outsider.pk, model.public_id) == CacheRule(enabled=True, ttl=30, percent=0)
    assert policies.rule_for(outsider.pk, other_model.public_id) is not None  # every model of that tenant


def test_the_policy_for_the_pair_wins_over_both(tenant: Tenant, outsider: Tenant, model: PublicModel) -> None:
    cache_policy_set(model=model, enabled=False)
    cache_policy_set(tenant=tenant, enabled=False)
    cache_policy_set(model=model, tenant=tenant, ttl_seconds=60, charge="percent", charge_percent=25)

    policies = load_cache_policies()

    assert policies.rule_for(tenant.pk, model.public_id) == CacheRule(enabled=True, ttl=60, percent=25)
    assert policies.rule_for(outsider.pk, model.public_id) is None


def test_setting_a_scope_again_replaces_its_policy(tenant: Tenant, model: PublicModel) -> None:
    cache_policy_set(model=model, tenant=tenant, ttl_seconds=60)
    cache_policy_set(model=model, tenant=tenant, ttl_seconds=90, charge="free")

    assert CachePolicy.objects.count() == 1
    assert load_cache_policies().rule_for(tenant.pk, model.public_id) == CacheRule(enabled=True, ttl=90, percent=0)


def test_a_policy_needs_a_scope_and_a_percent_when_charged_by_percent(model: PublicModel) -> None:
    with pytest.raises(ValidationError, match="at least one"):
        cache_policy_set()
    with pytest.raises(ValidationError, match="percent"):
        cache_policy_set(model=model, charge="percent")
    with pytest.raises(ValidationError):
        cache_policy_set(model=model, charge="percent", charge_percent=150)


def test_the_database_refuses_two_policies_for_one_scope(tenant: Tenant, model: PublicModel) -> None:
    CachePolicy.objects.create(tenant=tenant)
    with pytest.raises(IntegrityError), transaction.atomic():
        CachePolicy.objects.create(tenant=tenant)
    with pytest.raises(IntegrityError), transaction.atomic():
        CachePolicy.objects.create()


def test_a_policy_goes_with_its_model_or_tenant(tenant: Tenant, model: PublicModel) -> None:
    cache_policy_set(model=model, tenant=tenant)
    cache_policy_set(tenant=tenant)

    tenant.delete()

    assert CachePolicy.objects.count() == 0
