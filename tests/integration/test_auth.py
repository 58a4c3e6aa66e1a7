"""Who gets in: every refused key is a 401 with OpenAI's body, and the key is never echoed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from providers.models import ModelRoute
from tenants.keys import generate_key
from tenants.services import api_key_revoke
from tenants.tests.factories import IssuedKey, make_key
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

INVALID_KEY_BODY = {"type": "invalid_request_error", "param": None, "code": "invalid_api_key"}


def _wrong_secret(issued: IssuedKey) -> str:
    last = issued.plaintext[-1]
    return issued.plaintext[:-1] + ("a" if last != "a" else "b")


def _revoked(issued: IssuedKey) -> str:
    api_key_revoke(api_key=issued.api_key)
    return issued.plaintext


def _expired(issued: IssuedKey) -> str:
    expired = make_key(tenant=issued.api_key.tenant, expires_at=timezone.now() - timedelta(minutes=1))
    return expired.plaintext


def _of_an_inactive_tenant(issued: IssuedKey) -> str:
    tenant = issued.api_key.tenant
    tenant.active = False
    tenant.save()
    return issued.plaintext


def _unknown(issued: IssuedKey) -> str:
    return generate_key()  # well-formed, never stored


REFUSED: dict[str, Callable[[IssuedKey], str]] = {
    "malformed": lambda issued: "sk-this-is-not-a-portico-key",
    "truncated": lambda issued: issued.plaintext[:-1],
    "unknown": _unknown,
    "wrong-secret": _wrong_secret,
    "revoked": _revoked,
    "expired": _expired,
    "inactive-tenant": _of_an_inactive_tenant,
}


@pytest.fixture(params=sorted(REFUSED))
def refused_key(request: pytest.FixtureRequest, key: IssuedKey, echo_route: ModelRoute, settle: Settle) -> str:
    presented = REFUSED[request.param](key)
    settle()
    return presented


def test_it_refuses_the_key_with_401_invalid_api_key(portico: PorticoServer, refused_key: str) -> None:
    with portico.client(refused_key) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()

    error = caught.value
    assert error.status_code == 401
    assert (error.type, error.param, error.code) == ("invalid_request_error", None, "invalid_api_key")
    assert error.response.headers["x-request-id"]


def test_the_refusal_never_echoes_or_logs_the_key(
    portico: PorticoServer, refused_key: str, echo_route: ModelRoute
) -> None:
    with portico.client(refused_key) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=echo_route.public_id, messages=[{"role": "user", "content": "hi"}])

    assert refused_key not in caught.value.response.text
    assert refused_key[3:11] not in caught.value.response.text  # not even its public part
    assert refused_key not in portico.log()


def test_a_refusal_carries_the_clients_request_id(portico: PorticoServer, refused_key: str) -> None:
    response = portico.http.get(
        "/v1/models", headers={"Authorization": f"Bearer {refused_key}", "X-Request-Id": "who-was-refused"}
    )

    assert response.status_code == 401
    assert response.headers["x-request-id"] == "who-was-refused"


def test_a_request_without_a_key_gets_401(portico: PorticoServer) -> None:
    response = portico.http.get("/v1/models")

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert {name: body["error"][name] for name in INVALID_KEY_BODY} == INVALID_KEY_BODY
    assert "Authorization" in body["error"]["message"]


def test_a_key_under_another_scheme_than_bearer_gets_401(
    portico: PorticoServer, key: IssuedKey, settle: Settle
) -> None:
    settle()

    response = portico.http.get("/v1/models", headers={"Authorization": f"Basic {key.plaintext}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_authentication_comes_before_reading_the_body(portico: PorticoServer) -> None:
    response = portico.http.post(
        "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401


def test_the_api_key_header_works_too(
    portico: PorticoServer, key: IssuedKey, echo_route: ModelRoute, settle: Settle
) -> None:
    settle()

    listed = portico.http.get("/v1/models", headers={"api-key": key.plaintext})
    chatted = portico.http.post(
        "/v1/chat/completions",
        json={"model": echo_route.public_id, "messages": [{"role": "user", "content": "via api-key"}]},
        headers={"api-key": key.plaintext},
    )

    assert listed.status_code == 200
    assert [model["id"] for model in listed.json()["data"]] == [echo_route.public_id]
    assert chatted.status_code == 200
    assert chatted.json()["choices"][0]["message"]["content"] == "via api-key"


def test_a_wrong_key_in_the_api_key_header_gets_401(portico: PorticoServer, key: IssuedKey, settle: Settle) -> None:
    settle()

    response = portico.http.get("/v1/models", headers={"api-key": _wrong_secret(key)})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_key_that_expires_later_works(portico: PorticoServer, key: IssuedKey, settle: Settle) -> None:
    later = make_key(tenant=key.api_key.tenant, expires_at=timezone.now() + timedelta(hours=1))
    settle()

    assert portico.status_with(later.plaintext) == 200
