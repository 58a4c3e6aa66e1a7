"""Portico's description of each model in /v1/models, read through the official SDK, for the three personas.

The owner and a teammate belong to acme, which describes models (the default);
the outsider belongs to globex, which turned the description off and so gets
OpenAI's four fields alone. Every object is checked against OpenAI's `Model` schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from openai.types import Model

from billing.services import price_add
from gateway.tests.test_models_described import OPENAI_FIELDS, PORTICO_FIELDS, openai_model_schema
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tenant_services import tenant_update
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]


@dataclass
class Catalogue:
    priced: ModelRoute  # two providers, a price, a window and a family
    unpriced: ModelRoute
    providers: list[str]  # the priced model's, in routing order
    owner: IssuedKey
    teammate: IssuedKey
    outsider: IssuedKey


@pytest.fixture
def catalogue(mock_provider: Provider, tag: str, settle: Settle) -> Catalogue:
    priced = make_route(
        provider=mock_provider,
        public_id=f"priced-{tag}",
        owned_by="acme-labs",
        context_window=200_000,
        max_output_tokens=8_192,
        model_family="house",
        supports_vision=True,
    )
    spare = make_provider(kind="mock", name=f"spare-{tag}")
    make_route(provider=spare, public_id=priced.public_id, priority=1)
    price_add(
        model=priced.model,
        input_per_million=Decimal("0.15"),
        output_per_million=Decimal("0.6"),
        cached_input_per_million=Decimal("0.075"),
    )
    unpriced = make_route(provider=mock_provider, public_id=f"unpriced-{tag}")
    acme = make_tenant(slug=f"acme-{tag}", allowed_model_ids=[priced.pk, unpriced.pk])
    globex = make_tenant(slug=f"globex-{tag}", allowed_model_ids=[priced.pk])
    tenant_update(tenant=globex, fields={"describe_models": False})
    catalogue = Catalogue(
        priced=priced,
        unpriced=unpriced,
        providers=[mock_provider.name, spare.name],
        owner=make_key(tenant=acme, name="owner"),
        teammate=make_key(tenant=acme, name="teammate"),
        outsider=make_key(tenant=globex, name="outsider"),
    )
    settle()
    return catalogue


@pytest.fixture
def model_schema() -> dict[str, Any]:
    return openai_model_schema()


def _listed(portico: PorticoServer, issued: IssuedKey) -> tuple[list[Model], list[dict[str, Any]]]:
    """The SDK's typed models and the raw JSON objects they were read from."""
    with portico.client(issued.plaintext) as client:
        raw = client.models.with_raw_response.list()
        return list(raw.parse()), raw.http_response.json()["data"]


@pytest.mark.parametrize("persona", ["owner", "teammate"])
def test_the_sdk_keeps_porticos_fields_as_extras(
    portico: PorticoServer, catalogue: Catalogue, model_schema: dict[str, Any], persona: str
) -> None:
    models, objects = _listed(portico, getattr(catalogue, persona))

    assert [model.id for model in models] == sorted([catalogue.priced.public_id, catalogue.unpriced.public_id])
    priced = next(model for model in models if model.id == catalogue.priced.public_id)
    assert (priced.object, priced.owned_by) == ("model", "acme-labs")
    assert set(priced.model_extra or {}) == PORTICO_FIELDS
    assert priced.providers == catalogue.providers
    assert priced.capabilities == ["chat", "json_mode", "streaming", "tools", "vision"]
    assert (priced.context_window, priced.max_output_tokens, priced.model_family) == (200_000, 8_192, "house")
    assert priced.pricing == {
        "currency": "USD",
        "input_per_million": "0.15",
        "output_per_million": "0.6",
        "cached_input_per_million": "0.075",
    }
    unpriced = next(model for model in models if model.id == catalogue.unpriced.public_id)
    assert unpriced.pricing is None
    for shown in objects:
        jsonschema.validate(shown, model_schema)


def test_retrieve_describes_the_model_as_the_list_does(portico: PorticoServer, catalogue: Catalogue) -> None:
    with portico.client(catalogue.owner.plaintext) as client:
        retrieved = client.models.retrieve(catalogue.priced.public_id)
        listed = next(model for model in client.models.list() if model.id == catalogue.priced.public_id)

    assert retrieved.model_dump() == listed.model_dump()
    assert (retrieved.model_extra or {})["pricing"]["input_per_million"] == "0.15"


def test_a_tenant_that_hides_the_description_gets_openais_four_fields(
    portico: PorticoServer, catalogue: Catalogue, model_schema: dict[str, Any]
) -> None:
    models, objects = _listed(portico, catalogue.outsider)
    with portico.client(catalogue.outsider.plaintext) as client:
        retrieved = client.models.with_raw_response.retrieve(catalogue.priced.public_id)

    assert [model.id for model in models] == [catalogue.priced.public_id]
    assert models[0].model_extra == {}
    assert [set(shown) for shown in objects] == [OPENAI_FIELDS]
    assert set(retrieved.http_response.json()) == OPENAI_FIELDS
    jsonschema.validate(objects[0], model_schema)


def test_turning_the_description_off_reaches_the_server(
    portico: PorticoServer, catalogue: Catalogue, settle: Settle
) -> None:
    _, before = _listed(portico, catalogue.owner)
    tenant_update(tenant=catalogue.owner.api_key.tenant, fields={"describe_models": False})
    settle()
    _, after = _listed(portico, catalogue.owner)

    assert {frozenset(shown) for shown in before} == {frozenset(OPENAI_FIELDS | PORTICO_FIELDS)}
    assert {frozenset(shown) for shown in after} == {frozenset(OPENAI_FIELDS)}
