"""CORS against a running server: preflights, and answers whole and streamed, for listed and unlisted origins."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from providers.models import ModelRoute
from tenants.tenant_services import tenant_update
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

APP = "http://app.localhost:5173"
ELSEWHERE = "http://evil.localhost:6666"


@pytest.fixture
def people(personas: Callable[..., Personas], echo_route: ModelRoute, settle: Settle) -> Personas:
    """The owner's tenant lists APP; the outsider's tenant lists ELSEWHERE, never APP."""
    people = personas(echo_route)
    tenant_update(tenant=people.owner.api_key.tenant, fields={"cors_origins": [APP]})
    tenant_update(tenant=people.outsider.api_key.tenant, fields={"cors_origins": [ELSEWHERE]})
    settle()
    return people


def _chat(route: ModelRoute, key: str, origin: str, *, stream: bool = False) -> dict[str, object]:
    return {
        "headers": {"Authorization": f"Bearer {key}", "Origin": origin},
        "json": {"model": route.public_id, "messages": [{"role": "user", "content": "hi there"}], "stream": stream},
    }


def _preflight(portico: PorticoServer, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
    }
    return httpx.options(portico.url("/v1/chat/completions"), headers=headers)


def test_a_listed_origin_may_preflight_without_a_key(portico: PorticoServer, people: Personas) -> None:
    response = _preflight(portico, APP)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    allowed = response.headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type", "x-stainless-os", "x-portico-timeout"} <= set(allowed)
    assert response.headers["access-control-max-age"] == "600"
    assert response.headers["vary"] == "origin"


def test_an_unlisted_origin_is_not_granted_by_a_preflight(portico: PorticoServer, people: Personas) -> None:
    response = _preflight(portico, "http://nobody.localhost:1")

    assert response.status_code == 204
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("persona", ["owner", "teammate"])
def test_the_tenants_keys_are_answered_for_its_origin(
    portico: PorticoServer, people: Personas, echo_route: ModelRoute, persona: str
) -> None:
    key = getattr(people, persona).plaintext
    response = httpx.post(portico.url("/v1/chat/completions"), **_chat(echo_route, key, APP))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "hi there"
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in response.headers["vary"].lower()
    exposed = response.headers["access-control-expose-headers"].split(", ")
    assert {"x-request-id", "x-portico-attempts", "retry-after", "x-ratelimit-remaining-requests"} <= set(exposed)


def test_another_tenants_origin_gets_no_cors_headers(
    portico: PorticoServer, people: Personas, echo_route: ModelRoute
) -> None:
    # ELSEWHERE may preflight (the outsider's tenant lists it), but the owner's tenant does not list it.
    assert _preflight(portico, ELSEWHERE).headers["access-control-allow-origin"] == ELSEWHERE

    chat = _chat(echo_route, people.owner.plaintext, ELSEWHERE)
    response = httpx.post(portico.url("/v1/chat/completions"), **chat)  # type: ignore[arg-type]

    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_an_outsiders_key_gets_no_cors_headers_for_the_owners_origin(
    portico: PorticoServer, people: Personas, echo_route: ModelRoute
) -> None:
    chat = _chat(echo_route, people.outsider.plaintext, APP)
    response = httpx.post(portico.url("/v1/chat/completions"), **chat)  # type: ignore[arg-type]

    assert response.json()["error"]["code"] == "model_not_found"  # answered by Portico, not failed
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_a_streamed_answer_carries_the_cors_headers(
    portico: PorticoServer, people: Personas, echo_route: ModelRoute
) -> None:
    chat = _chat(echo_route, people.owner.plaintext, APP, stream=True)
    with httpx.stream("POST", portico.url("/v1/chat/completions"), **chat) as response:  # type: ignore[arg-type]
        body = response.read().decode()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == APP
    assert "x-portico-attempts" in response.headers["access-control-expose-headers"]
    assert body.rstrip().endswith("data: [DONE]")


def test_a_refused_request_of_an_accepted_key_is_readable_by_the_page(portico: PorticoServer, people: Personas) -> None:
    chat = _chat_unknown_model(people.owner.plaintext)
    response = httpx.post(portico.url("/v1/chat/completions"), **chat)  # type: ignore[arg-type]

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.headers["access-control-allow-origin"] == APP


def _chat_unknown_model(key: str) -> dict[str, object]:
    return {
        "headers": {"Authorization": f"Bearer {key}", "Origin": APP},
        "json": {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
    }
