"""Probe findings on the management API (/api/) and the URL space around it.

The tenant admin manages acme; `b-secret-model` exists, but only for another
tenant, so to them it must read exactly as a model that does not exist.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from billing.models import RateLimit
from billing.tests.factories import make_user, token_headers
from providers.tests.factories import make_route
from tenants.models import ApiKey
from tenants.tests.factories import make_tenant

pytestmark = pytest.mark.django_db

SECRET_MODEL = "b-secret-model"
OPENAI_INVALID_URL = {"message": "Invalid URL (GET /v1)", "type": "invalid_request_error", "param": None, "code": None}


@pytest.fixture
def web() -> Client:
    """Django's test client: these are Django views (`client` is the OpenAI SDK in these tests)."""
    return Client()


@pytest.fixture
def narrow(db):
    """acme may use gpt-4o only; b-secret-model is kept for globex."""
    public = make_route(public_id="gpt-4o")
    secret = make_route(public_id=SECRET_MODEL)
    make_tenant(slug="globex", allowed_model_ids=[secret.pk])
    return make_tenant(slug="acme", allowed_model_ids=[public.pk])


@pytest.fixture
def acme_admin(narrow) -> dict[str, str]:
    return token_headers(make_user(admin_of=[narrow]))


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


def _post(web, url, headers, **body):
    return web.post(url, body, content_type="application/json", headers=headers)


# --- A model the tenant may not use reads as one that does not exist -----------------------------------


def test_a_tenant_admin_cannot_tell_a_forbidden_model_from_a_missing_one_when_creating_a_key(web, acme_admin, narrow):
    forbidden = _post(web, "/api/keys/", acme_admin, tenant=narrow.pk, name="ci", allowed_models=[SECRET_MODEL])
    missing = _post(web, "/api/keys/", acme_admin, tenant=narrow.pk, name="ci", allowed_models=["no-such-model"])

    assert (forbidden.status_code, missing.status_code) == (400, 400)
    assert forbidden.json() == {"allowed_models": [f"Unknown model: {SECRET_MODEL}."]}
    assert missing.json() == {"allowed_models": ["Unknown model: no-such-model."]}
    assert not ApiKey.objects.filter(name="ci").exists()


def test_a_tenant_admin_cannot_set_a_rate_limit_on_a_model_their_tenant_may_not_use(web, acme_admin, narrow):
    forbidden = _post(web, "/api/rate-limits/", acme_admin, tenant=narrow.pk, model=SECRET_MODEL, max_concurrent=1)
    missing = _post(web, "/api/rate-limits/", acme_admin, tenant=narrow.pk, model="no-such-model", max_concurrent=1)
    allowed = _post(web, "/api/rate-limits/", acme_admin, tenant=narrow.pk, model="gpt-4o", max_concurrent=1)

    assert forbidden.status_code == 400
    assert forbidden.json() == {"model": [f"Unknown model: {SECRET_MODEL}."]}
    assert missing.json() == {"model": ["Unknown model: no-such-model."]}
    assert allowed.status_code == 201
    assert list(RateLimit.objects.values_list("model", flat=True)) == ["gpt-4o"]


def test_a_rate_limit_on_a_key_is_checked_against_the_keys_tenant(web, acme_admin, narrow):
    key = _post(web, "/api/keys/", acme_admin, tenant=narrow.pk, name="ci").json()

    response = _post(web, "/api/rate-limits/", acme_admin, api_key=key["id"], model=SECRET_MODEL, max_concurrent=1)

    assert response.json() == {"model": [f"Unknown model: {SECRET_MODEL}."]}


def test_an_operator_is_still_told_which_models_the_tenant_may_not_use(web, operator, narrow):
    response = _post(
        web, "/api/keys/", operator, tenant=narrow.pk, name="ci", allowed_models=[SECRET_MODEL, "no-such-model"]
    )

    assert response.json() == {
        "allowed_models": ["Unknown model: no-such-model.", f"The tenant may not use: {SECRET_MODEL}."]
    }


# --- Control characters are a 400, never a 500 --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/keys/", {"name": "ci", "allowed_models": ["gpt-4o\x00"]}),
        ("/api/keys/", {"name": "ci\x00"}),
        ("/api/keys/", {"name": "c\x1bi"}),
        ("/api/rate-limits/", {"model": "\x00", "max_concurrent": 1}),
    ],
)
def test_a_control_character_in_a_body_is_a_json_400(web, acme_admin, narrow, url, body):
    response = _post(web, url, acme_admin, tenant=narrow.pk, **body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "control characters" in response.json()["detail"]


def test_the_management_api_takes_json_bodies_only(web, acme_admin, narrow):
    response = web.post("/api/keys/", {"tenant": narrow.pk, "name": "ci\x00"}, headers=acme_admin)

    assert response.status_code == 415
    assert not ApiKey.objects.exists()


# --- JSON, not HTML -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/no-such-thing/", "/api/no-such-thing", "/api/keys/1/no-such-action/"])
def test_an_unknown_management_url_is_a_json_404(web, acme_admin, url):
    response = web.get(url, headers=acme_admin)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_an_error_in_the_management_api_is_a_json_500_without_its_traceback(web, acme_admin, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("billing.apis.usage_totals", broken)
    web.raise_request_exception = False

    response = web.get("/api/usage/totals/", headers=acme_admin)

    assert response.status_code == 500
    assert response.json() == {"detail": "A server error occurred."}
    assert b"secret internals" not in response.content


@pytest.mark.parametrize("method", ["get", "post"])
def test_v1_without_its_slash_is_openais_invalid_url(web, method):
    response = getattr(web, method)("/v1")

    assert response.status_code == 404
    assert response.json() == {"error": {**OPENAI_INVALID_URL, "message": f"Invalid URL ({method.upper()} /v1)"}}


def test_a_request_django_refuses_before_any_view_is_json_in_both_apis(web):
    """A Host outside ALLOWED_HOSTS is refused by Django itself, with its HTML page unless told otherwise."""
    management = web.get("/api/keys/", headers={"host": "evil.example"})
    openai = web.get("/v1", headers={"host": "evil.example"})

    assert (management.status_code, management.json()) == (400, {"detail": "Bad request."})
    assert openai.status_code == 400
    assert set(openai.json()["error"]) == {"message", "type", "param", "code"}


def test_an_unknown_v1_url_through_django_answers_as_the_fast_path_does(web):
    response = web.get("/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json() == {"error": {**OPENAI_INVALID_URL, "message": "Invalid URL (GET /v1/no-such-thing)"}}


# --- Throttles ----------------------------------------------------------------------------------------


@override_settings(PORTICO_API_THROTTLE_USER="2/min")
def test_a_user_is_throttled_past_their_rate_and_another_user_is_not(web, acme_admin, operator):
    statuses = [web.get("/api/tenants/", headers=acme_admin).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert web.get("/api/tenants/", headers=operator).status_code == 200


@override_settings(PORTICO_API_THROTTLE_ANON="1/min", PORTICO_PUBLIC_MANAGEMENT_SCHEMA=True)
def test_anonymous_callers_are_throttled_by_address(web):
    first = web.get("/api/schema/?format=json", REMOTE_ADDR="192.0.2.7")
    second = web.get("/api/schema/?format=json", REMOTE_ADDR="192.0.2.7")

    assert (first.status_code, second.status_code) == (200, 429)
    assert "throttled" in second.json()["detail"]


# --- Who may read the API descriptions ------------------------------------------------------------------


def test_the_management_schema_needs_a_token_unless_published(web, acme_admin, admin_client):
    url = "/api/schema/?format=json"
    assert web.get(url).status_code == 401
    assert web.get(url, headers=token_headers(make_user())).status_code == 403
    assert web.get(url, headers=acme_admin).status_code == 200
    assert admin_client.get(url).status_code == 200  # staff signed in to the admin
    with override_settings(PORTICO_PUBLIC_MANAGEMENT_SCHEMA=True):
        assert web.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/v1/docs", "/v1/openapi.json"])
def test_the_openai_docs_are_public_unless_kept_to_staff(web, admin_client, url):
    assert web.get(url).status_code == 200
    with override_settings(PORTICO_PUBLIC_OPENAI_DOCS=False):
        anonymous = web.get(url)
        assert anonymous.status_code == 302
        assert anonymous["Location"].startswith("/admin/login/")
        assert admin_client.get(url).status_code == 200
