"""Failover before the first byte: a public model on three loopback upstreams, one of them in trouble.

Whatever the first deployment does wrong before it sends a byte (a 500, a 429,
a refused connection, silence, a connection closed), the official SDK sees a
normal answer from the next one; the headers and the ledger say which deployment
served and after how many attempts, and the call's limits are charged once.
After the first byte a failure is reported in the stream, not retried.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai import OpenAI

from billing.models import DeploymentPrice, Price, RateLimit, UsageRecord
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import CloseBeforeAnswer, DropMidStream, Fail, Hang, Script, rate_limited
from tests.fakes.fleet import FakeFleet, refused_base_url
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]
LEDGER_WITHIN = 10.0
FIRST_BYTE_TIMEOUT = 0.5


def ledger_row(client_request_id: str) -> UsageRecord:
    deadline = time.monotonic() + LEDGER_WITHIN
    while True:
        row = UsageRecord.objects.filter(client_request_id=client_request_id).first()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no ledger row for {client_request_id}"
        time.sleep(0.05)


def ask(client: OpenAI, model: str, *, stream: bool, **options: Any) -> tuple[str, dict[str, str], str]:
    """The answer's text, its headers, and the request id the ledger knows it by."""
    request_id = f"fo-{uuid.uuid4().hex}"
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HI, stream=stream, extra_headers={"x-request-id": request_id}, **options
    )
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    return text, dict(raw.headers), request_id


@pytest.fixture
def sdk(portico: PorticoServer, key: IssuedKey) -> Any:
    with portico.client(key.plaintext) as client:
        yield client


TROUBLE: dict[str, Script | None] = {
    "500s": Fail(500, "upstream exploded", type="server_error"),
    "429 with Retry-After": rate_limited(30),
    "refused connections": None,  # its provider points at a port that refuses
    "silence before the first byte": Hang(),
    "a connection closed before any byte": CloseBeforeAnswer(),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("trouble", list(TROUBLE))
def test_the_next_deployment_answers_when_the_first_fails_before_its_first_byte(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str, trouble: str, stream: bool
) -> None:
    upstream_model = f"fo-{tag}"
    urls = [upstream.base_url for upstream in upstreams]
    behaviour = TROUBLE[trouble]
    if behaviour is None:
        urls[0] = refused_base_url()
    else:
        upstreams[0].script(upstream_model, behaviour)
    routes = deploy(f"gpt-fo-{tag}", upstream_model, urls=urls, first_byte_timeout=FIRST_BYTE_TIMEOUT)
    settle()

    text, headers, request_id = ask(sdk, f"gpt-fo-{tag}", stream=stream)

    assert text == "served by fake-2"
    assert headers["x-portico-attempts"] == "2"
    assert headers["x-portico-provider"] == f"fake-2-{tag}"
    assert headers["x-portico-deployment"] == f"fake-2-{tag}/{upstream_model}"
    assert headers["x-portico-routing"].startswith("strategy=priority")
    row = ledger_row(request_id)
    assert (row.status, row.deployment_id, row.deployment, row.attempts) == (
        200,
        routes[1].pk,
        f"fake-2-{tag}/{upstream_model}",
        2,
    )
    assert upstreams[2].received(upstream_model) == []


def test_a_deployment_that_said_retry_after_is_left_alone_until_then(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"fo-{tag}"
    upstreams[0].script(upstream_model, rate_limited(30))
    deploy(f"gpt-fo-{tag}", upstream_model)
    settle()

    first = ask(sdk, f"gpt-fo-{tag}", stream=False)
    second = ask(sdk, f"gpt-fo-{tag}", stream=False)

    assert [first[1]["x-portico-attempts"], second[1]["x-portico-attempts"]] == ["2", "1"]
    assert second[0] == "served by fake-2"
    assert len(upstreams[0].received(upstream_model)) == 1


def test_with_no_other_deployment_the_429_reaches_the_client_with_retry_after(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"fo-{tag}"
    upstreams[0].script(upstream_model, rate_limited(7))
    deploy(f"gpt-fo-{tag}", upstream_model, urls=[upstreams[0].base_url])
    settle()

    with pytest.raises(openai.RateLimitError) as error:
        sdk.chat.completions.create(model=f"gpt-fo-{tag}", messages=HI)

    assert error.value.response.headers["retry-after"] == "7"
    assert error.value.response.headers["x-portico-attempts"] == "1"


def test_a_failure_after_the_first_byte_ends_the_stream_and_is_not_retried(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"fo-{tag}"
    upstreams[0].script(upstream_model, DropMidStream(after=2))
    deploy(f"gpt-fo-{tag}", upstream_model)
    settle()

    received: list[Any] = []
    stream = sdk.chat.completions.create(model=f"gpt-fo-{tag}", messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        received.extend(stream)

    assert received  # the first events did arrive
    assert upstreams.served_by(upstream_model) == ["fake-1"]


def test_every_deployment_failed_so_the_fallback_model_answers(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstreams[0].script(f"first-{tag}", Fail(503, "overloaded", type="server_error"))
    upstreams[1].script(f"first-{tag}", Fail(500, "broken", type="server_error"))
    deploy(f"backup-{tag}", f"backup-{tag}", urls=[upstreams[2].base_url])
    deploy(f"gpt-fo-{tag}", f"first-{tag}", urls=[u.base_url for u in upstreams][:2], fallbacks=[f"backup-{tag}"])
    settle()

    text, headers, request_id = ask(sdk, f"gpt-fo-{tag}", stream=True)

    assert text == "served by fake-3"
    assert headers["x-portico-attempts"] == "3"
    assert headers["x-portico-routing"].endswith(f"fallback model backup-{tag}")
    assert ledger_row(request_id).attempts == 3


def test_limits_and_budget_are_charged_once_per_call_however_many_attempts(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str, key: IssuedKey
) -> None:
    upstream_model = f"fo-{tag}"
    upstreams[0].script(upstream_model, Fail(500, "broken", type="server_error"))
    routes: list[ModelRoute] = deploy(f"gpt-fo-{tag}", upstream_model)
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=2)
    Price.objects.create(route=routes[0].model, input_per_million=Decimal(1), output_per_million=Decimal(2))
    DeploymentPrice.objects.create(
        deployment=routes[1], input_per_million=Decimal("0.5"), output_per_million=Decimal(1)
    )
    settle()

    answers = [ask(sdk, f"gpt-fo-{tag}", stream=False) for _ in range(2)]
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model=f"gpt-fo-{tag}", messages=HI)

    assert [headers["x-portico-attempts"] for _, headers, _ in answers] == ["2", "2"]
    row = ledger_row(answers[0][2])
    usage = (row.prompt_tokens, row.completion_tokens)
    assert row.cost == (Decimal(usage[0]) * 1 + Decimal(usage[1]) * 2) / 1_000_000
    assert row.provider_cost == (Decimal(usage[0]) * Decimal("0.5") + Decimal(usage[1]) * 1) / 1_000_000
