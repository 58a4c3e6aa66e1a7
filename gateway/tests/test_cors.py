"""CORS on /v1/: preflights answered from the snapshot, real answers per the key's tenant (gateway/cors.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_django import Settings

from gateway.cors import ALLOW_HEADERS, EXPOSE_HEADERS, PreflightOrigins, grant_allows, preflight_of
from gateway.tests.test_fastpath import run_in_process, started_portico
from providers.models import ModelRoute
from tenants.facade import KeyGrant
from tenants.tenant_services import tenant_update
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db(transaction=True)

APP = "https://app.example.com"
ELSEWHERE = "https://evil.example.net"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


def grant(*origins: str) -> KeyGrant:
    return KeyGrant(
        key_id=1,
        prefix="pk-x",
        tenant_id=1,
        tenant_slug="t",
        digest="",
        expires_at=None,
        allowed_models=None,
        cors_origins=frozenset(origins),
    )


# --- the pure parts ------------------------------------------------------------


def test_a_preflight_is_an_options_with_an_origin_and_a_requested_method() -> None:
    assert (
        preflight_of([(b"origin", b"https://a.test"), (b"access-control-request-method", b"POST")]) == "https://a.test"
    )
    assert preflight_of([(b"origin", b"https://a.test")]) is None
    assert preflight_of([(b"access-control-request-method", b"POST")]) is None


def test_a_grant_allows_only_the_origins_its_tenant_lists() -> None:
    assert grant_allows(grant(APP), APP)
    assert not grant_allows(grant(APP), ELSEWHERE)
    assert not grant_allows(grant(), APP)
    assert grant_allows(grant("*"), ELSEWHERE)
    assert not grant_allows(None, APP)  # the key was refused: nothing to allow


def test_preflight_origins_are_every_tenants_and_follow_a_new_snapshot() -> None:
    origins = PreflightOrigins()
    first = {"a": grant(APP), "b": grant()}
    assert origins.allows(first, APP)
    assert not origins.allows(first, ELSEWHERE)
    second = {"a": grant(), "b": grant(ELSEWHERE)}
    assert origins.allows(second, ELSEWHERE)
    assert not origins.allows(second, APP)


def test_the_headers_a_browser_client_needs_are_allowed_and_exposed() -> None:
    allowed = ALLOW_HEADERS.split(", ")
    for name in ("authorization", "content-type", "x-api-key", "anthropic-version", "openai-beta", "x-request-id"):
        assert name in allowed
    assert "x-portico-timeout" in allowed
    exposed = EXPOSE_HEADERS.split(", ")
    for name in ("x-request-id", "retry-after", "x-portico-upstream-id", "x-ratelimit-remaining-tokens"):
        assert name in exposed


# --- through the ASGI app --------------------------------------------------------


@pytest.fixture
def listed(owner: IssuedKey, outsider: IssuedKey, mock_route: ModelRoute) -> None:
    """The owner's tenant lists APP; the outsider's lists nothing."""
    tenant_update(tenant=owner.api_key.tenant, fields={"cors_origins": [APP]})


@pytest.fixture
async def portico(
    listed: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    run_in_process(settings, monkeypatch)
    async with started_portico() as client:
        yield client


def chat(issued: IssuedKey, origin: str | None, *, stream: bool = False) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {issued.plaintext}"}
    if origin:
        headers["Origin"] = origin
    body = {"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return {"headers": headers, "json": body}


async def test_a_listed_origin_may_preflight(portico: httpx.AsyncClient) -> None:
    response = await portico.options("/v1/chat/completions", headers=PREFLIGHT)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert "authorization" in response.headers["access-control-allow-headers"]
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "600"
    assert response.headers["vary"] == "origin"
    assert response.content == b""


async def test_an_origin_no_tenant_lists_gets_no_grant_from_a_preflight(portico: httpx.AsyncClient) -> None:
    response = await portico.options("/v1/chat/completions", headers={**PREFLIGHT, "Origin": ELSEWHERE})

    assert response.status_code == 204
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-headers" not in response.headers


async def test_an_options_that_is_no_preflight_is_answered_as_before(portico: httpx.AsyncClient) -> None:
    response = await portico.options("/v1/chat/completions")

    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_owners_answer_names_its_origin(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", **chat(owner, APP))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "origin" in response.headers["vary"].lower()
    assert "x-portico-attempts" in response.headers["access-control-expose-headers"]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_outsiders_key_gets_no_cors_headers_from_the_same_origin(
    portico: httpx.AsyncClient, outsider: IssuedKey, stream: bool
) -> None:
    response = await portico.post("/v1/chat/completions", **chat(outsider, APP, stream=stream))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_an_unlisted_origin_gets_no_cors_headers(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", **chat(owner, ELSEWHERE))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_a_request_without_an_origin_gets_no_cors_headers(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", **chat(owner, None))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "vary" not in response.headers


async def test_a_streamed_answer_names_its_origin(portico: httpx.AsyncClient, owner: IssuedKey) -> None:
    response = await portico.post("/v1/chat/completions", **chat(owner, APP, stream=True))  # type: ignore[arg-type]

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == APP
