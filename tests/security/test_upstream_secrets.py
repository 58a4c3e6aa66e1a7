"""A provider's secrets (its credential and its extra header values) never reach a client or a tenant.

An upstream quotes what it was sent in surprising places: every field of an error, a
mid-stream error event, even an answer's content. Whatever it quotes, no secret byte is
in a client's answer (body, headers, stream events), in the ledger tenants read, or in
the admin's provider pages; and the extra headers are stored encrypted.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

import openai
import pytest
from django.db import connection
from django.urls import reverse
from openai import OpenAI

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tests.fakes.openai_upstream import Fail, FailMidStream, FakeUpstream, QuoteHeader, Reply
from tests.integration.test_ledger import ledger_rows
from tests.servers import Settle

HI = [{"role": "user", "content": "hi"}]
SECRET_HEADER = "x-upstream-account-key"


@pytest.fixture
def header_secret() -> str:
    return f"acct-{secrets.token_hex(16)}"


@pytest.fixture
def route(
    committed_db: None,
    upstream: FakeUpstream,
    upstream_credential: str,
    header_secret: str,
    tag: str,
    settle: Settle,
) -> ModelRoute:
    provider = make_provider(
        kind="openai",
        name=f"quoting-{tag}",
        base_url=upstream.base_url,
        credential=upstream_credential,
        extra_headers={SECRET_HEADER: header_secret},
    )
    route = make_route(provider=provider, public_id=f"gpt-quoting-{tag}", upstream_model=f"quoting-{tag}")
    settle()
    return route


def _assert_no_secret(texts: Iterable[str], *secret_values: str) -> None:
    seen = "\n".join(texts)
    for value in secret_values:
        assert value not in seen
        assert value[:20] not in seen  # nor a part long enough to identify it


def _request_id() -> str:
    return f"client-{uuid.uuid4()}"


@pytest.mark.parametrize("header", ["authorization", SECRET_HEADER])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_error_quoting_a_secret_in_every_field_reaches_neither_the_client_nor_the_ledger(
    client: OpenAI,
    upstream: FakeUpstream,
    route: ModelRoute,
    upstream_credential: str,
    header_secret: str,
    header: str,
    stream: bool,
) -> None:
    upstream.script(route.upstream_model, QuoteHeader(header))
    request_id = _request_id()

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=route.public_id, messages=HI, stream=stream, extra_headers={"x-request-id": request_id}
        )

    [received] = upstream.received(route.upstream_model)
    assert (received.headers["authorization"], received.headers[SECRET_HEADER]) == (
        f"Bearer {upstream_credential}",
        header_secret,
    )
    response = raised.value.response
    error = raised.value.body
    assert isinstance(error, dict)
    assert "[redacted]" in error["code"]
    _assert_no_secret(
        [response.text, *(f"{name}: {value}" for name, value in response.headers.items())],
        upstream_credential,
        header_secret,
    )
    [row] = ledger_rows([request_id])
    assert (row.status, row.error_type) == (400, "upstream_invalid_request")


@pytest.mark.parametrize("quoted", ["credential", "header"])
def test_a_mid_stream_error_event_quoting_a_secret_is_redacted(
    client: OpenAI,
    upstream: FakeUpstream,
    route: ModelRoute,
    upstream_credential: str,
    header_secret: str,
    quoted: str,
) -> None:
    value = upstream_credential if quoted == "credential" else header_secret
    error = Fail(500, f"boom with {value}", type=f"server_error {value}", code=value, param=f"Bearer {value}")
    upstream.script(route.upstream_model, FailMidStream(error))
    request_id = _request_id()

    with client.chat.completions.with_streaming_response.create(
        model=route.public_id, messages=HI, stream=True, extra_headers={"x-request-id": request_id}
    ) as response:
        raw = b"".join(response.iter_bytes()).decode()
        headers = [f"{name}: {value}" for name, value in response.headers.items()]

    assert '"error"' in raw
    assert "[redacted]" in raw
    _assert_no_secret([raw, *headers], upstream_credential, header_secret)
    [row] = ledger_rows([request_id])
    assert (row.status, row.error_type) == (502, "upstream_error")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_answer_quoting_the_secrets_is_redacted(
    client: OpenAI,
    upstream: FakeUpstream,
    route: ModelRoute,
    upstream_credential: str,
    header_secret: str,
    stream: bool,
) -> None:
    content = f"Your key is {upstream_credential} and your account {header_secret} ."
    upstream.script(route.upstream_model, Reply(content))

    if stream:
        chunks = client.chat.completions.create(model=route.public_id, messages=HI, stream=True)
        answer = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    else:
        completion = client.chat.completions.create(model=route.public_id, messages=HI)
        answer = completion.choices[0].message.content or ""

    assert answer == "Your key is [redacted] and your account [redacted] ."


def test_extra_headers_are_stored_encrypted(route: ModelRoute, header_secret: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM providers_provider WHERE id = %s", [route.provider_id])
        [row] = cursor.fetchall()

    assert not any(header_secret in str(column) for column in row)


@pytest.mark.django_db
def test_the_admin_never_shows_the_credential_or_an_extra_header_value(admin_client) -> None:
    credential, header_value = f"sk-{secrets.token_hex(16)}", f"acct-{secrets.token_hex(16)}"
    provider = make_provider(
        kind="openai",
        base_url="https://api.openai.com/v1",
        credential=credential,
        extra_headers={SECRET_HEADER: header_value},
    )
    stored = Provider.objects.get(pk=provider.pk)
    pages = [
        reverse("admin:providers_provider_changelist"),
        reverse("admin:providers_provider_change", args=[provider.pk]),
    ]
    html = [admin_client.get(url).content.decode() for url in pages]
    refused = admin_client.post(
        reverse("admin:providers_provider_add"),
        {"name": "", "kind": "openai", "base_url": "https://a.example/v1", "credential": credential}
        | {"extra_headers": f'{{"{SECRET_HEADER}": "{header_value}"}}'},
    )

    assert refused.status_code == 200
    assert SECRET_HEADER in html[1]  # the names are shown, so an operator knows what is set
    _assert_no_secret([*html, refused.content.decode()], credential, header_value)
    _assert_no_secret([*html], stored.credential_encrypted, stored.extra_headers_encrypted)
