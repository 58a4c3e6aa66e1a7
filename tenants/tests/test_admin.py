from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from providers.tests.factories import make_route
from tenants.facade import authenticate, load_key_grants
from tenants.keys import KEY_PREFIX, PREFIX_LENGTH, SECRET_LENGTH
from tenants.models import ApiKey, ManagementToken, Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_key, make_tenant

pytestmark = pytest.mark.django_db

KEY_PATTERN = re.compile(rf"{KEY_PREFIX}[A-Za-z0-9]{{{PREFIX_LENGTH - len(KEY_PREFIX) + SECRET_LENGTH}}}")


def make_user(*, username: str, admin_of=()):
    user = get_user_model().objects.create_user(username=username)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return user


def _add_key(client, tenant, **fields):
    data = {"tenant": tenant.pk, "name": "laptop", "expires_at_0": "", "expires_at_1": "", **fields}
    return client.post(reverse("admin:tenants_apikey_add"), data)


def _assert_no_key_secrets(html: str, *issued) -> None:
    for key in issued:
        assert key.plaintext not in html
        assert key.api_key.digest not in html
    assert not KEY_PATTERN.search(html)


def test_the_admin_is_branded_portico(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()

    assert "<title>Console | Portico</title>" in html
    assert ">Portico</a>" in html


def test_the_tenant_list_counts_each_tenants_keys(admin_client, owner, teammate, outsider):
    response = admin_client.get(reverse("admin:tenants_tenant_changelist"))

    counts = {tenant.slug: tenant.key_count for tenant in response.context["cl"].result_list}
    assert counts == {"acme": 2, "globex": 1}


def test_the_tenant_list_filters_by_active(admin_client, tenant, outsider):
    outsider.api_key.tenant.active = False
    outsider.api_key.tenant.save()

    response = admin_client.get(reverse("admin:tenants_tenant_changelist") + "?active__exact=0")

    assert [t.slug for t in response.context["cl"].result_list] == ["globex"]


def test_the_tenant_page_lists_its_keys_without_their_secrets(admin_client, owner, teammate):
    response = admin_client.get(reverse("admin:tenants_tenant_change", args=[owner.api_key.tenant_id]))

    html = response.content.decode()
    assert owner.api_key.prefix in html
    assert teammate.api_key.prefix in html
    assert reverse("admin:tenants_apikey_add") + f"?tenant={owner.api_key.tenant_id}" in html
    _assert_no_key_secrets(html, owner, teammate)


def test_the_add_form_asks_only_for_tenant_name_expiry_and_models(admin_client):
    response = admin_client.get(reverse("admin:tenants_apikey_add"))

    assert set(response.context["adminform"].form.fields) == {"tenant", "name", "expires_at", "allowed_models"}


def test_creating_a_key_redirects_to_a_page_that_shows_a_working_plaintext(admin_client, tenant):
    created = _add_key(admin_client, tenant)
    api_key = ApiKey.objects.get(tenant=tenant, name="laptop")

    assert created.status_code == 302
    assert created["Location"] == reverse("admin:tenants_apikey_created", args=[api_key.pk])
    assert api_key.digest not in created.content.decode()
    response = admin_client.get(created["Location"])
    assert [t.name for t in response.templates][0] == "admin/tenants/apikey/key_created.html"
    plaintext = response.context["plaintext"]
    html = response.content.decode()
    assert plaintext in html
    assert "will not be shown again" in html
    assert "no-store" in response["Cache-Control"]
    assert authenticate(load_key_grants(), plaintext, time.time()).tenant_slug == "acme"


def test_reloading_the_created_page_shows_no_secret_and_creates_no_key(admin_client, tenant):
    created = _add_key(admin_client, tenant)
    first = admin_client.get(created["Location"])

    again = admin_client.get(created["Location"])

    plaintext = first.context["plaintext"]
    assert plaintext in first.content.decode()
    assert again.status_code == 200
    assert again.context["plaintext"] is None
    assert plaintext not in again.content.decode()
    assert not KEY_PATTERN.search(again.content.decode())
    assert "was shown once and cannot be shown again" in again.content.decode()
    assert ApiKey.objects.filter(tenant=tenant).count() == 1


def test_a_new_keys_plaintext_is_shown_only_to_the_session_that_created_it(admin_client, client, tenant):
    created = _add_key(admin_client, tenant)
    client.force_login(get_user_model().objects.create_superuser("other-admin"))

    elsewhere = client.get(created["Location"])
    here = admin_client.get(created["Location"])

    assert elsewhere.context["plaintext"] is None
    assert here.context["plaintext"] is not None


def test_a_new_keys_plaintext_is_kept_nowhere_after_its_page(admin_client, tenant):
    plaintext = admin_client.get(_add_key(admin_client, tenant)["Location"]).context["plaintext"]
    api_key = ApiKey.objects.get(tenant=tenant, name="laptop")

    session = admin_client.session
    assert all(plaintext not in str(value) for value in session.values())
    for url in (
        reverse("admin:tenants_apikey_changelist"),
        reverse("admin:tenants_apikey_change", args=[api_key.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert plaintext not in html
        assert api_key.digest not in html
    assert plaintext not in {api_key.prefix, api_key.digest}


def test_a_new_key_can_be_limited_to_some_of_the_tenants_models(admin_client, tenant):
    route = make_route(public_id="gpt-4o")
    make_route(public_id="gpt-4o-mini")

    plaintext = admin_client.get(_add_key(admin_client, tenant, allowed_models=[route.model_id])["Location"]).context[
        "plaintext"
    ]

    grant = authenticate(load_key_grants(), plaintext, time.time())
    assert grant.allowed_models == frozenset({"gpt-4o"})


def test_a_key_cannot_be_given_models_its_tenant_may_not_use(admin_client):
    allowed = make_route(public_id="gpt-4o")
    other = make_route(public_id="o1")
    tenant = make_tenant(slug="narrow", allowed_model_ids=[allowed.pk])

    response = _add_key(admin_client, tenant, allowed_models=[other.model_id])

    assert response.status_code == 200
    assert "The tenant may not use these models: o1." in response.content.decode()
    assert not ApiKey.objects.filter(tenant=tenant).exists()


def test_key_pages_never_show_a_plaintext_or_digest(admin_client, owner, teammate, outsider):
    pages = [
        reverse("admin:tenants_apikey_changelist"),
        reverse("admin:tenants_apikey_changelist") + f"?q={owner.api_key.prefix}",
        reverse("admin:tenants_apikey_change", args=[owner.api_key.pk]),
        reverse("admin:tenants_apikey_delete", args=[owner.api_key.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200
        _assert_no_key_secrets(response.content.decode(), owner, teammate, outsider)


def test_the_change_form_shows_the_prefix_read_only(admin_client, owner):
    response = admin_client.get(reverse("admin:tenants_apikey_change", args=[owner.api_key.pk]))

    form = response.context["adminform"].form
    assert "prefix" not in form.fields
    assert "digest" not in form.fields
    assert owner.api_key.prefix in response.content.decode()


def test_the_key_list_finds_a_key_by_its_prefix(admin_client, owner, teammate):
    response = admin_client.get(reverse("admin:tenants_apikey_changelist") + f"?q={owner.api_key.prefix}")

    assert [k.pk for k in response.context["cl"].result_list] == [owner.api_key.pk]


def test_the_key_list_filters_by_tenant(admin_client, owner, teammate, outsider):
    url = reverse("admin:tenants_apikey_changelist") + f"?tenant__id__exact={outsider.api_key.tenant_id}"

    response = admin_client.get(url)

    assert [k.pk for k in response.context["cl"].result_list] == [outsider.api_key.pk]


def test_the_revoke_action_revokes_only_the_selected_keys(admin_client, owner, teammate, outsider):
    response = admin_client.post(
        reverse("admin:tenants_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [owner.api_key.pk]},
        follow=True,
    )

    assert "Revoked 1 key(s)." in response.content.decode()
    grants = load_key_grants()
    now = time.time()
    assert authenticate(grants, owner.plaintext, now) is None
    assert authenticate(grants, teammate.plaintext, now) is not None
    assert authenticate(grants, outsider.plaintext, now) is not None
    assert ApiKey.objects.get(pk=owner.api_key.pk).revoked_at is not None


def test_revoking_an_already_revoked_key_says_so(admin_client, owner):
    url = reverse("admin:tenants_apikey_changelist")
    admin_client.post(url, {"action": "revoke_keys", "_selected_action": [owner.api_key.pk]})

    response = admin_client.post(url, {"action": "revoke_keys", "_selected_action": [owner.api_key.pk]}, follow=True)

    assert "Revoked 0 key(s) (1 already revoked)." in response.content.decode()


def test_a_revoked_key_cannot_be_switched_back_on_from_its_page(admin_client, owner):
    url = reverse("admin:tenants_apikey_changelist")
    admin_client.post(url, {"action": "revoke_keys", "_selected_action": [owner.api_key.pk]})

    response = admin_client.get(reverse("admin:tenants_apikey_change", args=[owner.api_key.pk]))

    assert "active" not in response.context["adminform"].form.fields


def test_a_key_can_still_be_deleted(admin_client, owner):
    url = reverse("admin:tenants_apikey_delete", args=[owner.api_key.pk])

    admin_client.post(url, {"post": "yes"})

    assert not ApiKey.objects.filter(pk=owner.api_key.pk).exists()


def test_a_tenant_can_be_added_with_a_model_allowlist(admin_client):
    route = make_route(public_id="gpt-4o")
    data = {
        "name": "Initech",
        "slug": "initech",
        "active": "on",
        "allowed_models": [route.model_id],
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }

    admin_client.post(reverse("admin:tenants_tenant_add"), data)

    key = make_key(tenant=Tenant.objects.get(slug="initech"))
    assert authenticate(load_key_grants(), key.plaintext, time.time()).allowed_models == frozenset({"gpt-4o"})


def test_a_management_token_is_shown_once_after_a_redirect(admin_client, tenant):
    ada = make_user(username="ada", admin_of=[tenant])

    created = admin_client.post(reverse("admin:tenants_managementtoken_add"), {"user": ada.pk})
    shown = admin_client.get(created["Location"])
    again = admin_client.get(created["Location"])

    token = ManagementToken.objects.get(user=ada)
    assert created["Location"] == reverse("admin:tenants_managementtoken_created", args=[token.pk])
    plaintext = shown.context["plaintext"]
    assert plaintext.startswith(token.prefix)
    assert plaintext in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert again.context["plaintext"] is None
    assert plaintext not in again.content.decode()
    assert ManagementToken.objects.count() == 1


def test_the_tenant_and_key_pages_name_the_tenants_admins(admin_client, owner, outsider):
    tenant = owner.api_key.tenant
    ada = make_user(username="ada", admin_of=[tenant])
    make_user(username="bob", admin_of=[outsider.api_key.tenant])

    for url in (
        reverse("admin:tenants_tenant_change", args=[tenant.pk]),
        reverse("admin:tenants_apikey_change", args=[owner.api_key.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert f'<a href="{reverse("admin:auth_user_change", args=[ada.pk])}">ada</a>' in html
        assert ">bob<" not in html
