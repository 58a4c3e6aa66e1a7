"""GET /v1/models and /v1/models/{id} through the official SDK, for the three personas."""

from __future__ import annotations

from dataclasses import dataclass

import openai
import pytest

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]


@dataclass
class Catalogue:
    """Four routes; the owner's tenant may use three of them, and the owner's key narrows that to two."""

    shared: ModelRoute
    tenant_only: ModelRoute
    slashed: ModelRoute
    outsiders: ModelRoute
    owner: IssuedKey
    teammate: IssuedKey
    outsider: IssuedKey


@pytest.fixture
def catalogue(mock_provider: Provider, tag: str, settle: Settle) -> Catalogue:
    shared = make_route(provider=mock_provider, public_id=f"shared-{tag}", owned_by="acme-labs")
    tenant_only = make_route(provider=mock_provider, public_id=f"tenant-only-{tag}")
    slashed = make_route(provider=mock_provider, public_id=f"meta-llama/Llama-3-8B-{tag}")
    outsiders = make_route(provider=mock_provider, public_id=f"outsiders-{tag}")
    tenant = make_tenant(slug=f"acme-{tag}", allowed_model_ids=[shared.pk, tenant_only.pk, slashed.pk])
    other = make_tenant(slug=f"globex-{tag}", allowed_model_ids=[outsiders.pk])
    catalogue = Catalogue(
        shared=shared,
        tenant_only=tenant_only,
        slashed=slashed,
        outsiders=outsiders,
        owner=make_key(tenant=tenant, name="owner", allowed_model_ids=[shared.pk, slashed.pk]),
        teammate=make_key(tenant=tenant, name="teammate"),
        outsider=make_key(tenant=other, name="outsider"),
    )
    settle()
    return catalogue


def _listed(portico: PorticoServer, issued: IssuedKey) -> list[str]:
    with portico.client(issued.plaintext) as client:
        return [model.id for model in client.models.list()]


def test_each_persona_lists_only_the_models_it_may_use(portico: PorticoServer, catalogue: Catalogue) -> None:
    assert _listed(portico, catalogue.owner) == sorted([catalogue.shared.public_id, catalogue.slashed.public_id])
    assert _listed(portico, catalogue.teammate) == sorted(
        [catalogue.shared.public_id, catalogue.slashed.public_id, catalogue.tenant_only.public_id]
    )
    assert _listed(portico, catalogue.outsider) == [catalogue.outsiders.public_id]


def test_a_listing_has_openais_shape(portico: PorticoServer, catalogue: Catalogue) -> None:
    response = portico.http.get("/v1/models", headers={"Authorization": f"Bearer {catalogue.owner.plaintext}"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["object"] == "list"
    assert {"id", "object", "created", "owned_by"} <= set(body["data"][0])


def test_it_retrieves_a_model_the_key_may_use(portico: PorticoServer, catalogue: Catalogue) -> None:
    with portico.client(catalogue.owner.plaintext) as client:
        model = client.models.retrieve(catalogue.shared.public_id)

    assert model.id == catalogue.shared.public_id
    assert model.object == "model"
    assert model.owned_by == "acme-labs"
    assert model.created == int(catalogue.shared.created_at.timestamp())


def test_it_retrieves_a_model_whose_id_contains_a_slash(portico: PorticoServer, catalogue: Catalogue) -> None:
    with portico.client(catalogue.owner.plaintext) as client:
        model = client.models.retrieve(catalogue.slashed.public_id)

    assert model.id == catalogue.slashed.public_id


@pytest.mark.parametrize(
    ("persona", "route"),
    [
        pytest.param("owner", "tenant_only", id="narrowed-out-by-the-key"),
        pytest.param("teammate", "outsiders", id="another-tenants-model"),
        pytest.param("outsider", "shared", id="outsider-asks-for-the-tenants-model"),
    ],
)
def test_it_hides_a_model_the_key_may_not_use(
    portico: PorticoServer, catalogue: Catalogue, persona: str, route: str
) -> None:
    issued: IssuedKey = getattr(catalogue, persona)
    forbidden: ModelRoute = getattr(catalogue, route)

    with portico.client(issued.plaintext) as client, pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(forbidden.public_id)

    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == "model"


def test_it_answers_404_for_an_unknown_model(portico: PorticoServer, catalogue: Catalogue) -> None:
    with portico.client(catalogue.teammate.plaintext) as client, pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")

    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message


def test_it_refuses_a_chat_with_a_model_the_key_may_not_use(portico: PorticoServer, catalogue: Catalogue) -> None:
    with portico.client(catalogue.owner.plaintext) as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model=catalogue.tenant_only.public_id, messages=[{"role": "user", "content": "hi"}]
        )

    assert caught.value.code == "model_not_found"
