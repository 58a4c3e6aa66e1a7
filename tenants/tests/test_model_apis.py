"""The management API for providers and public models (providers/apis.py, with the access rules of
tenants/apis.py), seen by an operator, a tenant admin, and a stranger.

The tenant admin manages acme, which may use gpt-4o only; o1 is kept for
globex, so to acme's admin it must read exactly as a model that does not exist.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from providers.credentials import decrypt_credential, decrypt_headers
from providers.models import ModelRoute, Provider, PublicModel
from providers.tests.factories import make_provider, make_route
from tenants.models import Tenant, TenantRole
from tenants.services import membership_create
from tenants.tests.factories import make_tenant, management_token_headers

pytestmark = pytest.mark.django_db

CREDENTIAL = "sk-proj-APIsecret0123456789abcdef"
HEADER_SECRET = "org-HEADERsecret0123456789"


def _headers(*, staff: bool = False, admin_of=()) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=f"user-{get_user_model().objects.count()}", is_staff=staff)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return management_token_headers(user)


@pytest.fixture
def web() -> Client:
    return Client()


@pytest.fixture
def catalogue(db) -> dict[str, ModelRoute]:
    openai = make_provider(name="openai", kind="openai", base_url="https://api.openai.test/v1")
    gpt = make_route(provider=openai, public_id="gpt-4o", supports_vision=True)
    o1 = make_route(provider=openai, public_id="o1")
    make_tenant(slug="globex", allowed_model_ids=[o1.pk])
    make_tenant(slug="acme", allowed_model_ids=[gpt.pk])
    return {"gpt-4o": gpt, "o1": o1}


@pytest.fixture
def operator(db) -> dict[str, str]:
    return _headers(staff=True)


@pytest.fixture
def acme_admin(catalogue) -> dict[str, str]:
    return _headers(admin_of=[Tenant.objects.get(slug="acme")])


@pytest.fixture
def stranger(db) -> dict[str, str]:
    return _headers()


def _send(web, method, url, headers, body=None):
    return getattr(web, method)(url, body, content_type="application/json", headers=headers)


def _model_body(**fields):
    body = {
        "public_id": "house",
        "capabilities": ["chat", "streaming"],
        "strategy": "weighted",
        "deployments": [
            {"provider": "first", "upstream_model": "house-a", "weight": 3},
            {"provider": "second", "upstream_model": "house-b", "priority": 1, "max_in_flight": 8},
        ],
    }
    return {**body, **fields}


@pytest.fixture
def two_providers(db) -> None:
    make_provider(name="first", kind="mock")
    make_provider(name="second", kind="mock")


# --- providers ---


def test_an_operator_registers_a_provider_whose_secrets_never_come_back(web, operator):
    body = {
        "name": "openai",
        "kind": "openai",
        "base_url": "https://api.openai.test/v1",
        "credential": CREDENTIAL,
        "extra_headers": {"OpenAI-Organization": HEADER_SECRET},
    }

    created = _send(web, "post", "/api/providers/", operator, body)
    listed = _send(web, "get", "/api/providers/", operator)

    assert created.status_code == 201, created.content
    assert created.json()["has_credential"] is True
    assert created.json()["extra_header_names"] == ["OpenAI-Organization"]
    for response in (created, listed):
        assert CREDENTIAL not in response.content.decode()
        assert HEADER_SECRET not in response.content.decode()
    provider = Provider.objects.get(name="openai")
    assert decrypt_credential(provider.credential_encrypted) == CREDENTIAL
    assert decrypt_headers(provider.extra_headers_encrypted) == {"OpenAI-Organization": HEADER_SECRET}


def test_a_provider_registered_without_a_kind_is_of_the_documented_default_kind(web, operator):
    response = _send(web, "post", "/api/providers/", operator, {"name": "compatible", "base_url": "https://a.test/v1"})

    assert response.status_code == 201, response.content
    assert response.json()["kind"] == Provider.objects.get(name="compatible").kind == "openai"


def test_a_change_without_a_credential_keeps_it_and_an_empty_one_removes_it(web, operator):
    provider = make_provider(name="openai", kind="openai", base_url="https://a.test/v1", credential=CREDENTIAL)
    url = f"/api/providers/{provider.pk}/"

    kept = _send(web, "patch", url, operator, {"read_timeout": 30})
    removed = _send(web, "patch", url, operator, {"credential": ""})

    assert (kept.status_code, kept.json()["has_credential"], kept.json()["read_timeout"]) == (200, True, 30.0)
    assert (removed.status_code, removed.json()["has_credential"]) == (200, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "openai"}, "base_url"),
        ({"name": "x", "kind": "mock", "extra_headers": {"bad header": "v"}}, "extra_headers"),
        ({"name": "x", "kind": "mock", "read_timeout": 1e300}, "read_timeout"),
        ({"name": "x", "kind": "no-such-kind"}, "kind"),
    ],
)
def test_a_provider_that_could_not_work_is_refused(web, operator, body, field):
    response = _send(web, "post", "/api/providers/", operator, body)

    assert response.status_code == 400
    assert field in response.json()


def test_a_provider_that_serves_deployments_cannot_be_deleted(web, operator):
    route = make_route(public_id="gpt-4o")

    response = _send(web, "delete", f"/api/providers/{route.provider_id}/", operator)

    assert response.status_code == 400
    assert Provider.objects.filter(pk=route.provider_id).exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_providers_are_for_operators_only(web, acme_admin, stranger, catalogue, method):
    for headers in (acme_admin, stranger):
        assert _send(web, method, "/api/providers/", headers, {"name": "x", "kind": "mock"}).status_code == 403


# --- public models, as an operator ---


def test_an_operator_creates_a_model_with_two_deployments(web, operator, two_providers):
    response = _send(web, "post", "/api/models/", operator, _model_body())

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["public_id"], body["strategy"], body["capabilities"]) == ("house", "weighted", ["chat", "streaming"])
    assert body["retry_on"] == ["connect", "timeout", "5xx", "429", "stall"]
    deployments = [(d["provider"], d["upstream_model"], d["priority"], d["weight"]) for d in body["deployments"]]
    assert deployments == [("first", "house-a", 0, 3), ("second", "house-b", 1, 1)]
    assert PublicModel.objects.get(public_id="house").deployments.count() == 2


def test_deployments_given_in_a_change_become_the_whole_set(web, operator, two_providers):
    created = _send(web, "post", "/api/models/", operator, _model_body()).json()
    kept = created["deployments"][0]
    url = f"/api/models/{created['id']}/"

    changed = _send(
        web,
        "patch",
        url,
        operator,
        {"deployments": [{**kept, "weight": 5}, {"provider": "first", "upstream_model": "house-c", "priority": 2}]},
    )

    assert changed.status_code == 200, changed.content
    assert [(d["id"] == kept["id"], d["upstream_model"], d["weight"]) for d in changed.json()["deployments"]] == [
        (True, "house-a", 5),
        (False, "house-c", 1),
    ]
    assert not ModelRoute.objects.filter(upstream_model="house-b").exists()


def test_a_change_without_deployments_leaves_them_alone(web, operator, two_providers):
    created = _send(web, "post", "/api/models/", operator, _model_body()).json()

    changed = _send(web, "patch", f"/api/models/{created['id']}/", operator, {"strategy": "latency"})

    assert changed.json()["strategy"] == "latency"
    assert [d["id"] for d in changed.json()["deployments"]] == [d["id"] for d in created["deployments"]]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"fallbacks": ["house"]}, "fallbacks"),
        ({"fallbacks": ["no-such-model"]}, "fallbacks"),
        ({"retry_on": ["everything"]}, "retry_on"),
        ({"strategy": "random"}, "strategy"),
        ({"capabilities": ["telepathy"]}, "capabilities"),
        ({"deployments": [{"provider": "no-such-provider", "upstream_model": "m"}]}, "deployments"),
        ({"deployments": [{"provider": "first", "upstream_model": "m", "weight": -1}]}, "deployments"),
        ({"stall_timeout": 0}, "stall_timeout"),
    ],
)
def test_a_model_that_could_not_be_routed_is_refused(web, operator, two_providers, fields, field):
    response = _send(web, "post", "/api/models/", operator, _model_body(**fields))

    assert response.status_code == 400
    assert field in response.json()
    assert not PublicModel.objects.filter(public_id="house").exists()


def test_another_models_deployment_cannot_be_taken_over(web, operator, catalogue):
    stolen = catalogue["o1"]
    gpt = catalogue["gpt-4o"]

    response = _send(
        web,
        "patch",
        f"/api/models/{gpt.model_id}/",
        operator,
        {"deployments": [{"id": stolen.pk, "provider": "openai", "upstream_model": "o1"}]},
    )

    assert response.status_code == 400
    assert ModelRoute.objects.get(pk=stolen.pk).model_id == stolen.model_id


def test_a_fallback_names_another_existing_model(web, operator, two_providers, catalogue):
    response = _send(web, "post", "/api/models/", operator, _model_body(fallbacks=["o1", "gpt-4o"]))

    assert response.status_code == 201, response.content
    assert response.json()["fallbacks"] == ["o1", "gpt-4o"]


# --- public models, as a tenant admin and a stranger ---


def test_a_tenant_admin_reads_only_the_models_their_tenant_may_use(web, acme_admin, catalogue):
    listed = _send(web, "get", "/api/models/", acme_admin)

    assert listed.status_code == 200
    assert [row["public_id"] for row in listed.json()["results"]] == ["gpt-4o"]
    row = listed.json()["results"][0]
    assert row["capabilities"] == ["chat", "streaming", "tools", "vision", "json_mode"]
    assert not {"deployments", "strategy", "fallbacks"} & set(row)
    assert "openai" not in listed.content.decode()


def test_a_tenant_admin_reads_every_model_when_their_tenant_has_no_limit(web, catalogue):
    headers = _headers(admin_of=[make_tenant(slug="initech")])

    listed = _send(web, "get", "/api/models/", headers)

    assert sorted(row["public_id"] for row in listed.json()["results"]) == ["gpt-4o", "o1"]


def test_a_model_kept_for_another_tenant_reads_as_missing(web, acme_admin, catalogue):
    hidden = _send(web, "get", f"/api/models/{catalogue['o1'].model_id}/", acme_admin)
    missing = _send(web, "get", "/api/models/999999/", acme_admin)

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
def test_a_tenant_admin_cannot_change_models(web, acme_admin, catalogue, method):
    url = "/api/models/" if method == "post" else f"/api/models/{catalogue['gpt-4o'].model_id}/"

    response = _send(web, method, url, acme_admin, {"public_id": "mine", "strategy": "cost"})

    assert response.status_code == 403
    assert PublicModel.objects.get(public_id="gpt-4o").strategy == "priority"


def test_a_stranger_may_not_read_models(web, stranger, catalogue):
    assert _send(web, "get", "/api/models/", stranger).status_code == 403
