"""Keys in the portal: made by the key services, shown once after a redirect, narrowed to the tenant's models."""

from __future__ import annotations

import re
import time

from django.contrib.auth.models import User
from django.test import Client

from portal.tests.conftest import SignedIn, Tenancy
from tenants.facade import authenticate, load_key_grants
from tenants.models import ApiKey, TenantRole

SECRET = re.compile(rb'value="(pk-[^"]+)"')


def _create(web: Client, **fields: object) -> tuple[int, ApiKey | None]:
    before = set(ApiKey.objects.values_list("pk", flat=True))
    response = web.post("/portal/acme/keys/", {"name": "checkout", **fields})
    made = ApiKey.objects.exclude(pk__in=before)
    return response.status_code, made.first()


def test_a_new_key_is_shown_once_after_a_redirect_and_a_reload_makes_nothing(
    signed_in: SignedIn, acme: Tenancy
) -> None:
    web = signed_in(TenantRole.MEMBER)

    response = web.post("/portal/acme/keys/", {"name": "checkout"})
    assert response.status_code == 302
    assert response["Location"] == "/portal/acme/keys/created/"
    assert b"pk-" not in response.content
    shown = web.get(response["Location"])
    reloaded = web.get(response["Location"])

    [plaintext] = SECRET.findall(shown.content)
    api_key = ApiKey.objects.get(tenant=acme.tenant, name="checkout")
    grant = authenticate(load_key_grants(), plaintext.decode(), time.time())
    assert grant is not None
    assert grant.key_id == api_key.pk
    assert "no-store" in shown["Cache-Control"]
    assert reloaded.status_code == 302
    assert reloaded["Location"] == "/portal/acme/keys/"
    assert plaintext not in web.get("/portal/acme/keys/").content
    assert ApiKey.objects.filter(tenant=acme.tenant).count() == 2  # acme's first key and this one


def test_another_tenant_s_page_never_shows_the_new_key(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy, people: dict[str, User]
) -> None:
    web = signed_in(TenantRole.ADMIN)
    web.post("/portal/acme/keys/", {"name": "checkout"})

    assert web.get("/portal/globex/keys/created/").status_code == 404
    assert SECRET.findall(web.get("/portal/acme/keys/created/").content)


def test_a_key_can_be_narrowed_to_some_of_the_tenant_s_models(signed_in: SignedIn, acme: Tenancy) -> None:
    status, api_key = _create(signed_in(TenantRole.MEMBER), models=["mini"])

    assert status == 302
    assert api_key is not None
    assert api_key.models_restricted
    assert [model.public_id for model in api_key.allowed_models.all()] == ["mini"]
    assert load_key_grants()[api_key.prefix].allowed_models == frozenset({"mini"})


def test_a_key_is_refused_a_model_its_tenant_may_not_use_with_a_form_error(
    signed_in: SignedIn, acme: Tenancy, globex: Tenancy
) -> None:
    web = signed_in(TenantRole.ADMIN)

    for public_id in ("o1", "no-such-model"):  # globex's model reads as one that does not exist
        response = web.post("/portal/acme/keys/", {"name": "greedy", "models": ["mini", public_id]})
        assert response.status_code == 200
        assert f"{public_id} is not a model this tenant may use.".encode() in response.content
    assert not ApiKey.objects.filter(name="greedy").exists()


def test_the_form_offers_only_the_tenant_s_models(signed_in: SignedIn, acme: Tenancy, globex: Tenancy) -> None:
    page = signed_in(TenantRole.ADMIN).get("/portal/acme/keys/").content

    assert b'value="gpt-4o"' in page
    assert b'value="mini"' in page
    assert b'value="o1"' not in page  # not a bare "o1": a CSRF token or nonce in the page may hold one


def test_an_expiry_in_the_past_is_refused(signed_in: SignedIn, acme: Tenancy) -> None:
    status, api_key = _create(signed_in(TenantRole.ADMIN), expires_at="2001-01-01T00:00")

    assert status == 200
    assert api_key is None


def test_a_key_s_models_can_be_changed_within_the_tenant_s_and_widened_again(
    signed_in: SignedIn, acme: Tenancy
) -> None:
    web = signed_in(TenantRole.MEMBER)
    url = f"/portal/acme/keys/{acme.key.pk}/"

    narrowed = web.post(url, {"models": ["gpt-4o"]})
    refused = web.post(url, {"models": ["o1"]})
    after_refusal = load_key_grants()[acme.key.prefix].allowed_models
    widened = web.post(url, {})

    assert narrowed.status_code == 302
    assert refused.status_code == 200
    assert b"o1 is not a model this tenant may use." in refused.content
    assert after_refusal == frozenset({"gpt-4o"})
    assert widened.status_code == 302
    assert not ApiKey.objects.get(pk=acme.key.pk).models_restricted


def test_a_revoked_key_is_refused_by_the_gateway_and_revoking_again_keeps_the_first_time(
    signed_in: SignedIn, acme: Tenancy
) -> None:
    web = signed_in(TenantRole.MEMBER)

    web.post(f"/portal/acme/keys/{acme.key.pk}/revoke/")
    first = ApiKey.objects.get(pk=acme.key.pk).revoked_at
    web.post(f"/portal/acme/keys/{acme.key.pk}/revoke/")

    assert first is not None
    assert ApiKey.objects.get(pk=acme.key.pk).revoked_at == first
    assert acme.key.prefix not in load_key_grants()
    assert web.get(f"/portal/acme/keys/{acme.key.pk}/revoke/").status_code == 405
