"""Cache policies in the console: listed, and added through the form with its checks."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from caching.models import CachePolicy
from caching.services import cache_policy_set
from providers.tests.factories import make_route
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db


def test_the_list_shows_each_policy_by_its_scope(admin_client: Client) -> None:
    cache_policy_set(model=make_route(public_id="gpt-cached").model, tenant=make_tenant(slug="acme"), enabled=False)

    html = admin_client.get(reverse("admin:caching_cachepolicy_changelist")).content.decode()

    assert "gpt-cached for acme: off" in html


def test_a_policy_is_added_through_the_form(admin_client: Client) -> None:
    model = make_route(public_id="gpt-cached").model
    form = {"model": model.pk, "tenant": "", "enabled": "on", "ttl_seconds": 600, "charge": "percent"}

    refused = admin_client.post(reverse("admin:caching_cachepolicy_add"), form)
    added = admin_client.post(reverse("admin:caching_cachepolicy_add"), {**form, "charge_percent": 30})

    assert refused.status_code == 200
    assert "Give the percent of the price a hit costs." in refused.content.decode()
    assert added.status_code == 302
    policy = CachePolicy.objects.get()
    assert (policy.model_id, policy.tenant_id, policy.ttl_seconds, policy.charge_percent) == (model.pk, None, 600, 30)


def test_a_policy_without_a_scope_is_refused(admin_client: Client) -> None:
    form = {"model": "", "tenant": "", "enabled": "on", "ttl_seconds": 600, "charge": "full"}

    refused = admin_client.post(reverse("admin:caching_cachepolicy_add"), form)

    assert "choose at least one" in refused.content.decode()
    assert not CachePolicy.objects.exists()
