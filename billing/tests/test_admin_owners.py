"""A tenant's and a key's page in the console: their ledger, usage this month, limits, budgets and admins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from billing.services import budget_set, rate_limit_set
from billing.tests.factories import make_usage, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def usage(owner, teammate, outsider):
    """This month: two rows of acme's two keys and one of globex's; last month: one of acme's owner key."""
    return [
        make_usage(api_key=owner.api_key, prompt_tokens=100, completion_tokens=10, cost="1.5", created_at=NOW),
        make_usage(api_key=teammate.api_key, prompt_tokens=50, completion_tokens=5, cost="0.5", created_at=NOW),
        make_usage(api_key=outsider.api_key, prompt_tokens=9, completion_tokens=9, cost="7", created_at=NOW),
        make_usage(api_key=owner.api_key, cost="100", created_at=NOW - timedelta(days=30)),
    ]


def _ledger_link(html: str) -> str:
    found = re.search(r'<a href="([^"]*/billing/usagerecord/\?[^"]*)">See its ledger rows</a>', html)
    assert found, "no ledger link"
    return found.group(1).replace("&amp;", "&")


@time_machine.travel(NOW, tick=False)
def test_the_tenant_page_shows_its_month_limits_budgets_and_admins(admin_client, tenant, owner, outsider, usage):
    rate_limit_set(tenant=tenant, requests_per_minute=60)
    rate_limit_set(api_key=owner.api_key, model="gpt-4o", tokens_per_minute=1000)
    rate_limit_set(api_key=outsider.api_key, max_concurrent=99)
    budget_set(tenant=tenant, amount=Decimal(10), soft_limit_percent=50)
    make_user(username="ada", admin_of=[tenant])
    make_user(username="bob", admin_of=[outsider.api_key.tenant])

    html = admin_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()

    assert "2 requests · 150 → 15 tokens · $2.00 (2026-11, UTC)" in html
    assert "the tenant</a>, 2026-11:\n  $2.00 of $10.00 (20%)" in html
    assert '<meter min="0" max="10" low="5" high="10" optimum="0"\n         value="2">' in html
    assert ">60<" in html
    assert ">1000<" in html
    assert ">99<" not in html  # globex's
    assert ">ada</a>" in html
    assert "bob" not in html


@time_machine.travel(NOW, tick=False)
def test_the_tenant_page_links_to_its_ledger_rows_only(admin_client, tenant, usage):
    link = _ledger_link(admin_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode())

    listed = admin_client.get(link).context["cl"].result_list

    assert sorted(row.pk for row in listed) == sorted(row.pk for row in usage if row.tenant_id == tenant.pk)


@time_machine.travel(NOW, tick=False)
def test_the_key_page_shows_that_keys_month_limits_budget_and_ledger(admin_client, tenant, owner, teammate, usage):
    rate_limit_set(api_key=owner.api_key, requests_per_minute=7)
    rate_limit_set(api_key=teammate.api_key, requests_per_minute=8)
    budget_set(api_key=owner.api_key, amount=Decimal("1.2"), soft_limit_percent=80)
    make_user(username="ada", admin_of=[tenant])

    html = admin_client.get(reverse("admin:tenants_apikey_change", args=[owner.api_key.pk])).content.decode()
    listed = admin_client.get(_ledger_link(html)).context["cl"].result_list

    assert "1 requests · 100 → 10 tokens · $1.50 (2026-11, UTC)" in html
    assert ">7<" in html
    assert ">8<" not in html  # the teammate key's
    assert "$1.50 of $1.20 (125%)" in html
    assert 'value="1.2">' in html  # a bar over its amount is shown full
    assert ">ada</a>" in html
    assert sorted(row.pk for row in listed) == sorted(row.pk for row in usage if row.api_key_id == owner.api_key.pk)


def test_a_new_tenant_or_key_form_has_no_usage_to_show(admin_client):
    for url in (reverse("admin:tenants_tenant_add"), reverse("admin:tenants_apikey_add")):
        html = admin_client.get(url).content.decode()
        assert "See its ledger rows" not in html
        assert "Usage, limits and budgets" not in html


@time_machine.travel(NOW, tick=False)
def test_the_tenant_page_reads_its_usage_limits_and_budgets_in_a_fixed_number_of_queries(
    admin_client, tenant, owner, teammate, django_assert_max_num_queries
):
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    rate_limit_set(tenant=tenant, requests_per_minute=1)
    budget_set(tenant=tenant, amount=Decimal(1))
    with django_assert_max_num_queries(40) as few:
        admin_client.get(url)
    for key in (owner, teammate):
        rate_limit_set(api_key=key.api_key, requests_per_minute=2)
        budget_set(api_key=key.api_key, amount=Decimal(2))
        make_usage(api_key=key.api_key, created_at=NOW)

    with django_assert_max_num_queries(len(few)):
        admin_client.get(url)


def _links(html: str, text: str) -> list[str]:
    return [href.replace("&amp;", "&") for href in re.findall(rf'<a href="([^"]*)">{text}</a>', html)]


def test_the_key_pages_list_links_show_only_that_keys_limits_and_budget(admin_client, owner, teammate):
    mine = [
        rate_limit_set(api_key=owner.api_key, requests_per_minute=7).pk,
        budget_set(api_key=owner.api_key, amount=1).pk,
    ]
    rate_limit_set(api_key=teammate.api_key, requests_per_minute=8)
    budget_set(api_key=teammate.api_key, amount=Decimal(2))
    html = admin_client.get(reverse("admin:tenants_apikey_change", args=[owner.api_key.pk])).content.decode()

    limits_link, budgets_link = _links(html, "List them")
    listed = [admin_client.get(link).context["cl"].result_list for link in (limits_link, budgets_link)]

    assert [[row.pk for row in rows] for rows in listed] == [[mine[0]], [mine[1]]]


def test_the_tenant_pages_list_links_show_its_own_and_its_keys_limits(admin_client, tenant, owner, outsider):
    mine = sorted([rate_limit_set(tenant=tenant).pk, rate_limit_set(api_key=owner.api_key).pk])
    rate_limit_set(api_key=outsider.api_key)
    html = admin_client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk])).content.decode()

    listed = admin_client.get(_links(html, "List them")[0]).context["cl"].result_list

    assert sorted(row.pk for row in listed) == mine
