"""A usage report that cannot be right is replaced by Portico's own count, whatever the provider kind.

Each kind's fake (tests/fakes/registry.py) answers with the kind's own way of saying
"this prompt cost nothing": OpenAI's and Azure's `prompt_tokens: 0`, Anthropic's
`input_tokens: 0`, Gemini's `promptTokenCount: 0`, Cohere's zero `tokens` (or zero
`billed_units` when that is all it sends), Ollama's `prompt_eval_count: 0`, Replicate's
`input_token_count: 0` (or no counts at all). The client then gets Portico's count of
the prompt it sent and the text it received, flagged `x-portico-usage: counted` on a
whole answer, and the ledger row holds the same count with `tokens_estimated`. A stream
has sent its headers before its usage is known: the flag is the ledger's only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from openai import OpenAI

from billing import tokens
from billing.models import UsageRecord
from providers.models import ModelRoute
from tests.fakes import anthropic_upstream as anthropic
from tests.fakes import behaviours, cohere_upstream, ollama_upstream
from tests.fakes import gemini_upstream as gemini
from tests.fakes import replicate_upstream as replicate
from tests.fakes.registry import KINDS, SCRIPTED
from tests.integration.test_ledger import cost, ledger_rows, new_request_id, priced
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Say hello, and say who you are."}]
ANSWER = "Hello from a server that counts what it likes, and sometimes nothing at all."


@dataclass(frozen=True)
class Uncounted:
    """A kind's fake answering `ANSWER` with a usage report Portico cannot believe."""

    name: str
    kind: str
    reply: Callable[[str], Any]  # the fake's behaviour for this content


UNCOUNTED = (
    Uncounted("openai prompt_tokens 0", "openai", partial(behaviours.Reply, prompt_tokens=0)),
    Uncounted("openai all counts 0", "openai", lambda text: behaviours.Deviate(behaviours.Reply(text), {"zero_usage"})),
    Uncounted("azure prompt_tokens 0", "azure", partial(behaviours.Reply, prompt_tokens=0)),
    Uncounted("anthropic input_tokens 0", "anthropic", partial(anthropic.Reply, input_tokens=0)),
    Uncounted("gemini promptTokenCount 0", "gemini", partial(gemini.Reply, prompt_tokens=0)),
    Uncounted("cohere tokens 0", "cohere", partial(cohere_upstream.Reply, input_tokens=0, template_tokens=0)),
    Uncounted("cohere billed_units 0", "cohere", partial(cohere_upstream.Reply, input_tokens=0, billed_only=True)),
    Uncounted("ollama prompt_eval_count 0", "ollama", partial(ollama_upstream.Reply, prompt_eval_count=0)),
    Uncounted("replicate input_token_count 0", "replicate", partial(replicate.Reply, input_token_count=0)),
    Uncounted("replicate without metrics", "replicate", partial(replicate.Reply, metrics=False)),
)
# Replicate's stream events carry no counts: every Replicate stream is Portico's to count.
UNCOUNTED_STREAMS = (*UNCOUNTED, Uncounted("replicate any stream", "replicate", replicate.Reply))

# The prompt tokens each fake reports by default, which Portico believes.
REPORTED_PROMPT = {
    "openai": 11,
    "azure": 11,
    "anthropic": 11,
    "gemini": 9,
    "cohere": 12 + cohere_upstream.TEMPLATE_TOKENS,
    "ollama": 26,
    "replicate": 17,
}
BELIEVED = [
    pytest.param(kind, streamed, id=f"{kind} {'streamed' if streamed else 'whole'}")
    for kind in SCRIPTED
    for streamed in (False, True)
    if not (kind == "replicate" and streamed)
]


def scripted_route(request: pytest.FixtureRequest, settle: Settle, kind: str, behaviour: Any) -> ModelRoute:
    """A priced route of this kind, its fake scripted to answer with `behaviour`."""
    fake = KINDS[kind]
    assert fake.upstream_fixture is not None
    upstream = request.getfixturevalue(fake.upstream_fixture)
    route: ModelRoute = request.getfixturevalue(fake.route_fixture)
    upstream.script(route.upstream_model, behaviour)
    priced(route)
    settle()
    return route


def porticos_count(route: ModelRoute) -> tuple[int, int]:
    """(prompt, completion) as Portico counts them: the chat prompt sent and the text relayed."""
    prompt = tokens.count_chat_prompt({"messages": HELLO}, model=route.upstream_model)
    completion = tokens.count_text(ANSWER, model=route.upstream_model)
    assert prompt > 0
    assert completion > 0
    return prompt, completion


def usage_object(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def ask_whole(client: OpenAI, route: ModelRoute, request_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer's JSON as the client received it, and its headers."""
    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    assert raw.parse().choices[0].message.content == ANSWER
    return raw.http_response.json(), dict(raw.headers)


def ask_streamed(client: OpenAI, route: ModelRoute, request_id: str) -> dict[str, int]:
    """The usage chunk of a stream that asked for one, once the stream relayed `ANSWER` whole."""
    with client.chat.completions.with_streaming_response.create(
        model=route.public_id,
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": request_id},
    ) as response:
        chunks = [
            json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data: {")
        ]
    assert "".join(choice["delta"].get("content") or "" for c in chunks for choice in c["choices"]) == ANSWER
    [usage] = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    return usage


def only_row(request_id: str) -> UsageRecord:
    [row] = ledger_rows([request_id])
    return row


@pytest.mark.parametrize("case", UNCOUNTED, ids=[case.name for case in UNCOUNTED])
def test_a_whole_answer_whose_usage_cannot_be_right_is_counted_by_portico_and_flagged(
    request: pytest.FixtureRequest, client: OpenAI, settle: Settle, case: Uncounted
) -> None:
    route = scripted_route(request, settle, case.kind, case.reply(ANSWER))
    prompt, completion = porticos_count(route)
    request_id = new_request_id()

    body, headers = ask_whole(client, route, request_id)

    assert headers["x-portico-usage"] == "counted"
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (prompt, completion, True)
    assert row.cost == cost(prompt, completion) == Decimal(headers["x-portico-cost"])


@pytest.mark.parametrize("case", UNCOUNTED_STREAMS, ids=[case.name for case in UNCOUNTED_STREAMS])
def test_a_stream_whose_usage_cannot_be_right_ends_with_porticos_count_and_is_flagged_in_the_ledger(
    request: pytest.FixtureRequest, client: OpenAI, settle: Settle, case: Uncounted
) -> None:
    route = scripted_route(request, settle, case.kind, case.reply(ANSWER))
    prompt, completion = porticos_count(route)
    request_id = new_request_id()

    usage = ask_streamed(client, route, request_id)

    assert usage == usage_object(prompt, completion)
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (prompt, completion, True)
    assert row.cost == cost(prompt, completion)


@pytest.mark.parametrize(("kind", "streamed"), BELIEVED)
def test_a_believable_usage_is_the_upstreams_and_not_flagged(
    request: pytest.FixtureRequest, client: OpenAI, settle: Settle, kind: str, streamed: bool
) -> None:
    fake = KINDS[kind]
    assert fake.reply is not None
    route = scripted_route(request, settle, kind, fake.reply(ANSWER))
    request_id = new_request_id()

    if streamed:
        usage = ask_streamed(client, route, request_id)
    else:
        body, headers = ask_whole(client, route, request_id)
        usage = body["usage"]
        assert "x-portico-usage" not in headers

    assert usage["prompt_tokens"] == REPORTED_PROMPT[kind]
    row = only_row(request_id)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        False,
    )
