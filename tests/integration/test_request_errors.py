"""Requests Portico refuses itself: bad parameters, bad JSON, bad content types, bodies too large.

None of them may reach the upstream, and each is a JSON error in OpenAI's shape, never a 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import MAX_BODY_BYTES, PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def route(upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return upstream_route


@pytest.mark.parametrize(
    ("arguments", "param", "code"),
    [
        pytest.param({"temperature": 5}, "temperature", "decimal_above_max_value", id="temperature-too-high"),
        pytest.param({"top_p": -0.5}, "top_p", "decimal_below_min_value", id="top-p-negative"),
        pytest.param({"n": 0}, "n", "integer_below_min_value", id="n-zero"),
        pytest.param({"max_tokens": "many"}, "max_tokens", "invalid_type", id="max-tokens-a-string"),
        pytest.param({"presence_penalty": 3}, "presence_penalty", "decimal_above_max_value", id="presence-penalty"),
        pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length", id="five-stops"),
        pytest.param(
            {"stream_options": {"include_usage": True}}, "stream_options", "invalid_value", id="options-no-stream"
        ),
        pytest.param({"messages": []}, "messages", "empty_array", id="no-messages"),
        pytest.param(
            {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "invalid_value", id="bad-role"
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "user"}]},
            "messages[1].content",
            "missing_required_parameter",
            id="message-without-content",
        ),
    ],
)
def test_it_names_the_offending_parameter(
    client: OpenAI, upstream: FakeUpstream, route: ModelRoute, arguments: dict[str, Any], param: str, code: str
) -> None:
    request: dict[str, Any] = {"model": route.public_id, "messages": HI, **arguments}

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)

    error = caught.value
    assert error.status_code == 400
    assert (error.type, error.param, error.code) == ("invalid_request_error", param, code)
    assert upstream.received(route.upstream_model) == []


def test_a_route_without_a_capability_refuses_requests_that_need_it(
    client: OpenAI, upstream: FakeUpstream, upstream_provider: Provider, tag: str, settle: Settle
) -> None:
    no_tools = make_route(provider=upstream_provider, public_id=f"no-tools-{tag}", supports_tools=False)
    settle()
    tool = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=no_tools.public_id, messages=HI, tools=[tool])

    assert (caught.value.param, caught.value.code) == ("model", "unsupported_capability")
    assert upstream.received(no_tools.upstream_model) == []


def test_a_missing_model_is_named(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    response = portico.http.post(
        "/v1/chat/completions", json={"messages": HI}, headers={"Authorization": f"Bearer {key.plaintext}"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def _post(portico: PorticoServer, key: IssuedKey, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key.plaintext}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return portico.http.post("/v1/chat/completions", content=content, headers=headers)


def _assert_openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    return error


def test_malformed_json_is_a_400(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    response = _post(portico, key, b'{"model": "x", "messages": [', "application/json")

    _assert_openai_error(response, 400, "invalid_json")


def test_a_json_body_that_is_not_an_object_is_a_400(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    response = _post(portico, key, b"[1, 2, 3]", "application/json")

    _assert_openai_error(response, 400, "invalid_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_a_400(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, content_type: str | None
) -> None:
    response = _post(portico, key, b"model=x&messages=hi", content_type)

    _assert_openai_error(response, 400, "invalid_content_type")


def test_a_body_over_the_limit_is_a_413(
    portico: PorticoServer, key: IssuedKey, upstream: FakeUpstream, route: ModelRoute
) -> None:
    huge = "x" * (MAX_BODY_BYTES + 1024)
    response = portico.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": [{"role": "user", "content": huge}]},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )

    error = _assert_openai_error(response, 413, "request_too_large")
    assert str(MAX_BODY_BYTES) in error["message"]
    assert upstream.received(route.upstream_model) == []


def test_a_body_just_under_the_limit_is_served(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    content = "y" * (MAX_BODY_BYTES - 1024)
    response = portico.http.post(
        "/v1/chat/completions",
        json={"model": route.public_id, "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )

    assert response.status_code == 200


def test_an_unknown_path_is_a_json_404(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    response = portico.http.get("/v1/embeddingz", headers={"Authorization": f"Bearer {key.plaintext}"})

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_api_root_is_a_json_404_too(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    # OpenAI answers GET /v1/ like any unknown URL; Portico hands it to Ninja's (sync) API root view,
    # which Django serves as an HTML "Not Found" page.
    response = portico.http.get("/v1/", headers={"Authorization": f"Bearer {key.plaintext}"})

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_wrong_method_is_a_json_405(portico: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    response = portico.http.get("/v1/chat/completions", headers={"Authorization": f"Bearer {key.plaintext}"})

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
