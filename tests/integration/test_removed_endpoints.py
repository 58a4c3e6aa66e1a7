"""Endpoints OpenAI has removed answer as OpenAI answers them now: 404 `Invalid URL (METHOD /path)`."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from providers.models import ModelRoute
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.conftest import Personas
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]


@pytest.fixture
def people(upstream_route: ModelRoute, personas: Callable[..., Personas], settle: Settle) -> Personas:
    people = personas(upstream_route)
    settle()
    return people


def _invalid_url(method: str, path: str) -> dict[str, object]:
    message = f"Invalid URL ({method} {path})"
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/edits"),
        ("GET", "/v1/engines"),
        ("POST", "/v1/engines/davinci/completions"),
        ("POST", "/v1/no-such-endpoint"),  # for comparison: a URL that never existed
    ],
)
def test_a_removed_endpoint_is_an_invalid_url_for_everyone(
    portico: PorticoServer, upstream: FakeUpstream, upstream_route: ModelRoute, people: Personas, method: str, path: str
) -> None:
    body = {"model": upstream_route.public_id, "input": "What day of the wek is it?", "instruction": "Fix the spelling"}
    answers = [
        portico.http.request(method, path, json=body, headers={"Authorization": f"Bearer {persona.plaintext}"})
        for persona in (people.owner, people.teammate, people.outsider)
    ]
    answers.append(portico.http.request(method, path, json=body))  # no key at all

    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == _invalid_url(method, path)
    assert upstream.received(upstream_route.upstream_model) == []


def test_the_sdk_raises_not_found_for_edits(
    portico: PorticoServer, upstream: FakeUpstream, upstream_route: ModelRoute, people: Personas
) -> None:
    with portico.client(people.owner.plaintext) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.post(
            "/edits",
            body={"model": upstream_route.public_id, "input": "What day of the wek is it?", "instruction": "Fix it"},
            cast_to=object,
        )

    assert caught.value.status_code == 404
    assert caught.value.body == _invalid_url("POST", "/v1/edits")["error"]
    assert caught.value.response.headers["x-request-id"]
    assert upstream.received(upstream_route.upstream_model) == []
