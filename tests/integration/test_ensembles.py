"""Ensembles end to end: the official SDK against a real server and loopback upstreams.

A cascade asks the cheapest deployment first and escalates past an unacceptable
answer; a hedge asks a second deployment when the first is slower than its p95
time to first byte, relays the faster and cancels the other; a vote asks three and
answers what most say. Every upstream call is in the call's one ledger row: its
`attempts`, and its usage summed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from openai import OpenAI

from billing.models import DeploymentPrice, Price, UsageRecord
from billing.tokens import count_chat_prompt
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import Reply
from tests.fakes.fleet import FakeFleet
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "hi"}]
LEDGER_WITHIN = 10.0
SLOW = 5.0  # the slow deployment's first byte: far past any p95, and longer than a test waits
SEED_CALLS = 8  # quick calls that give a deployment its p95 (FirstByteTimes' min_samples)
ANSWER = "served by fake-2"  # 3 words; every fake reports 11 prompt tokens


class TruncatingUpstream(FakeUpstream):
    """A fake whose whole chat answers end with the `finish_reason` set for their model ("stop" by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.finish_reasons: dict[str, str] = {}

    def chat_answer(self, model: str, reply: Reply, n: int) -> dict[str, Any]:
        answer = super().chat_answer(model, reply, n)
        for choice in answer["choices"]:
            choice["finish_reason"] = self.finish_reasons.get(model, "stop")
        return answer


@pytest.fixture(scope="module")
def cheap() -> Iterator[TruncatingUpstream]:
    fake = TruncatingUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def sdk(portico: PorticoServer, key: IssuedKey) -> Iterator[OpenAI]:
    with portico.client(key.plaintext) as client:
        yield client


def ledger_row(client_request_id: str) -> UsageRecord:
    deadline = time.monotonic() + LEDGER_WITHIN
    while True:
        row = UsageRecord.objects.filter(client_request_id=client_request_id).first()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no ledger row for {client_request_id}"
        time.sleep(0.05)


def ask(client: OpenAI, model: str, *, stream: bool = False, **options: Any) -> tuple[str, dict[str, str], str]:
    """The answer's text, its headers, and the request id the ledger knows it by."""
    request_id = f"ens-{uuid.uuid4().hex}"
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=HI, stream=stream, extra_headers={"x-request-id": request_id}, **options
    )
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    return text, dict(raw.headers), request_id


def priced(routes: list[ModelRoute], per_million: list[str]) -> None:
    """The tenant's price (1 in, 2 out per million) and each deployment's provider cost."""
    Price.objects.create(route=routes[0].model, input_per_million=Decimal(1), output_per_million=Decimal(2))
    for route, cost in zip(routes, per_million, strict=True):
        DeploymentPrice.objects.create(
            deployment=route, input_per_million=Decimal(cost), output_per_million=Decimal(cost)
        )


SENTIMENT = {
    "type": "json_schema",
    "json_schema": {
        "name": "sentiment",
        "schema": {
            "type": "object",
            "properties": {"sentiment": {"enum": ["positive", "negative"]}},
            "required": ["sentiment"],
        },
    },
}
# What the cheapest deployment answers, the finish_reason it gives, what the request asks, the reason shown.
UNACCEPTABLE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "empty": ("", "stop", {}),
    "length": ("The answer is", "length", {}),
    "refusal": ("I'm sorry, but I can't help with that.", "stop", {}),
    "response_format": ('{"sentiment": "meh"}', "stop", {"response_format": SENTIMENT}),
}


@pytest.mark.parametrize("reason", list(UNACCEPTABLE))
def test_a_cascade_escalates_from_the_cheapest_deployment_past_an_unacceptable_answer(
    sdk: OpenAI,
    deploy: Deploy,
    upstreams: FakeFleet,
    cheap: TruncatingUpstream,
    settle: Settle,
    tag: str,
    reason: str,
) -> None:
    model = f"casc-{tag}"
    content, finish_reason, options = UNACCEPTABLE[reason]
    good = '{"sentiment": "positive"}' if options else ANSWER
    cheap.script(model, Reply(content))
    cheap.finish_reasons[model] = finish_reason
    upstreams[1].script(model, Reply(good))
    urls = [upstreams[0].base_url, upstreams[1].base_url, cheap.base_url]
    routes = deploy(f"gpt-{model}", model, urls=urls, ensemble="cascade")
    priced(routes, ["10", "2", "0.1"])  # by cost: the cheap one, fake-2, then fake-1
    settle()

    text, headers, request_id = ask(sdk, f"gpt-{model}", **options)

    assert text == good
    assert headers["x-portico-ensemble"] == f"cascade; answered at step 2; escalated: {reason}"
    assert headers["x-portico-attempts"] == "2"
    assert headers["x-portico-deployment"] == f"fake-2-{tag}/{model}"
    assert len(cheap.received(model)) == 1
    assert upstreams.served_by(model) == ["fake-2"]
    row = ledger_row(request_id)
    completion = len(content.split()) + len(good.split())
    assert (row.status, row.attempts, row.deployment_id) == (200, 2, routes[1].pk)
    assert (row.prompt_tokens, row.completion_tokens) == (22, completion)
    assert row.cost == (Decimal(22) * 1 + Decimal(completion) * 2) / 1_000_000


def test_a_cascade_stops_at_the_cheapest_deployment_when_its_answer_is_acceptable(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    model = f"casc-{tag}"
    routes = deploy(f"gpt-{model}", model, ensemble="cascade")
    priced(routes, ["10", "2", "0.1"])
    settle()

    text, headers, request_id = ask(sdk, f"gpt-{model}")

    assert text == "served by fake-3"
    assert headers["x-portico-ensemble"] == "cascade; answered at step 1"
    assert upstreams.served_by(model) == ["fake-3"]
    row = ledger_row(request_id)
    assert (row.attempts, row.prompt_tokens, row.completion_tokens) == (1, 11, 3)


def seed_first_byte_times(sdk: OpenAI, model: str, *, stream: bool) -> None:
    """Quick answers from the first deployment, enough for its p95 time to first byte to be known."""
    for _ in range(SEED_CALLS):
        text, headers, _ = ask(sdk, model, stream=stream)
        assert (text, headers["x-portico-ensemble"]) == ("served by fake-1", "hedge; not hedged")


def counted_prompt(upstream_model: str) -> int:
    """Portico's own count of the prompt: what a cancelled upstream call is billed."""
    return count_chat_prompt({"model": upstream_model, "messages": HI}, model=upstream_model)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_hedge_asks_a_second_deployment_when_the_first_is_slower_than_its_p95_and_cancels_the_slow_one(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str, stream: bool
) -> None:
    model = f"hedge-{tag}"
    deploy(f"gpt-{model}", model, urls=[upstreams[0].base_url, upstreams[1].base_url], ensemble="hedge")
    settle()
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if stream else {}
    seed_first_byte_times(sdk, f"gpt-{model}", stream=stream)
    upstreams[0].script(model, Reply(first_byte=SLOW))

    began = time.monotonic()
    text, headers, request_id = ask(sdk, f"gpt-{model}", stream=stream, **options)

    assert text == ANSWER
    assert time.monotonic() - began < SLOW / 2
    assert headers["x-portico-ensemble"].endswith("; second won")
    assert headers["x-portico-attempts"] == "2"
    assert headers["x-portico-deployment"] == f"fake-2-{tag}/{model}"
    slow = upstreams[0].answers(model)[-1]  # a streamed answer is logged even when quick
    assert slow.closed_early.wait(timeout=5)
    assert not slow.finished
    row = ledger_row(request_id)
    assert (row.status, row.attempts, row.streamed) == (200, 2, stream)
    assert (row.prompt_tokens, row.completion_tokens) == (11 + counted_prompt(model), 3)


def test_a_vote_answers_what_most_deployments_say_with_the_votes_in_a_header(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    model = f"vote-{tag}"
    # The dissenter answers first, so every vote is in before the majority is.
    upstreams[0].script(model, Reply("positive", first_byte=0.3))
    upstreams[1].script(model, Reply("positive", first_byte=0.3))
    upstreams[2].script(model, Reply("negative"))
    routes = deploy(f"gpt-{model}", model, ensemble="vote")
    settle()

    text, headers, request_id = ask(sdk, f"gpt-{model}")

    assert text == "positive"
    assert headers["x-portico-votes"] == "positive=2,negative=1"
    assert headers["x-portico-ensemble"] == "vote; 3 voters; 2 agree; 0 failed; 0 cancelled"
    assert headers["x-portico-attempts"] == "3"
    assert headers["x-portico-deployment"] == f"fake-1-{tag}/{model}"
    row = ledger_row(request_id)
    assert (row.status, row.attempts, row.deployment_id) == (200, 3, routes[0].pk)
    assert (row.prompt_tokens, row.completion_tokens) == (33, 3)


def test_a_model_without_an_ensemble_asks_one_deployment(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    model = f"plain-{tag}"
    deploy(f"gpt-{model}", model)
    settle()

    text, headers, _ = ask(sdk, f"gpt-{model}")

    assert text == "served by fake-1"
    assert "x-portico-ensemble" not in headers
    assert upstreams.served_by(model) == ["fake-1"]
