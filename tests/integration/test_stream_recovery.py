"""Streams that break after their first byte: stalls end them on time, and mid-stream recovery carries them on.

A public model on the fleet's loopback upstreams; the first deployment stalls,
drops its connection or sends an error event once its stream has begun. With
recovery off the official SDK raises mid-iteration, within about the model's
stall timeout for a stall. With recovery on it reads one complete stream: the
first deployment's text then the second's, under one id, one finish_reason and
a usage covering both, and the second deployment was sent the text relayed so
far as an assistant prefix. A tool-call stream is never carried on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from billing.models import UsageRecord
from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.behaviours import DropMidStream, Fail, FailMidStream, Reply, Stall
from tests.fakes.fleet import FakeFleet
from tests.fakes.openai_upstream import FakeUpstream
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HI = [{"role": "user", "content": "Write a long story."}]
STALL_TIMEOUT = 0.5
LEDGER_WITHIN = 10.0
BROKEN = "this stream will never finish properly"  # DropMidStream's text; after=3 relays its first two words
CONTINUED = "and then it did"


@pytest.fixture
def sdk(portico: PorticoServer, key: IssuedKey) -> Iterator[OpenAI]:
    # Shorter than the provider's read timeout, so a stall nothing detects fails the test rather than hanging it.
    with portico.client(key.plaintext, timeout=5) as client:
        yield client


def ledger_rows(client_request_id: str) -> list[UsageRecord]:
    deadline = time.monotonic() + LEDGER_WITHIN
    while not UsageRecord.objects.filter(client_request_id=client_request_id).exists():
        assert time.monotonic() < deadline, f"no ledger row for {client_request_id}"
        time.sleep(0.05)
    return list(UsageRecord.objects.filter(client_request_id=client_request_id))


class Read:
    """A stream as the SDK gave it: its chunks, when each arrived, and the error that ended it, if one did."""

    def __init__(self, client: OpenAI, model: str, **options: Any) -> None:
        self.request_id = f"sr-{uuid.uuid4().hex}"
        self.chunks: list[Any] = []
        self.arrived: list[float] = []
        self.error: openai.APIError | None = None
        self.ended_at = 0.0
        stream = client.chat.completions.create(
            model=model, messages=HI, stream=True, extra_headers={"x-request-id": self.request_id}, **options
        )
        try:
            for chunk in stream:
                self.chunks.append(chunk)
                self.arrived.append(time.monotonic())
        except openai.APIError as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else self.error.code

    @property
    def text(self) -> str:
        return "".join(chunk.choices[0].delta.content or "" for chunk in self.chunks if chunk.choices)

    @property
    def finish_reasons(self) -> list[str]:
        return [c.choices[0].finish_reason for c in self.chunks if c.choices and c.choices[0].finish_reason]

    @property
    def roles(self) -> list[str]:
        return [c.choices[0].delta.role for c in self.chunks if c.choices and c.choices[0].delta.role]


def model_for(deploy: Deploy, tag: str, upstreams: FakeFleet, *, recovery: bool) -> tuple[str, list[ModelRoute]]:
    public_id = f"gpt-sr-{tag}"
    urls = [upstream.base_url for upstream in upstreams][:2]
    routes = deploy(public_id, f"sr-{tag}", urls=urls, stall_timeout=STALL_TIMEOUT, mid_stream_recovery=recovery)
    return public_id, routes


# --- recovery off: the stream ends with the error event ---


def test_a_stream_that_stalls_after_its_first_byte_ends_with_an_error_after_the_stall_timeout(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstreams[0].script(f"sr-{tag}", Stall(after=3, content=BROKEN))
    model, routes = model_for(deploy, tag, upstreams, recovery=False)
    settle()

    read = Read(sdk, model)

    assert read.text == "this stream"
    assert read.error_code == "upstream_timeout"
    silence = read.ended_at - read.arrived[-1]
    assert STALL_TIMEOUT * 0.8 <= silence < STALL_TIMEOUT + 1.5
    assert upstreams.served_by(f"sr-{tag}") == ["fake-1"]
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.error_type, row.attempts, row.deployment_id) == (504, "upstream_stall", 1, routes[0].pk)
    assert row.completion_tokens > 0  # what was relayed is counted


def test_a_stream_that_stalls_before_its_first_event_moves_on_to_the_next_deployment(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstreams[0].script(f"sr-{tag}", Stall(after=0))  # headers sent, then nothing
    model, routes = model_for(deploy, tag, upstreams, recovery=False)
    settle()

    read = Read(sdk, model)

    assert read.error is None
    assert read.text == "served by fake-2"
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.attempts, row.deployment_id) == (200, 2, routes[1].pk)


# --- recovery on: one stream, carried on by the next deployment ---


@pytest.mark.parametrize(
    ("trouble", "relayed"),
    [
        pytest.param(DropMidStream(after=3), "this stream", id="dropped"),
        pytest.param(Stall(after=3, content=BROKEN), "this stream", id="stalled"),
        pytest.param(FailMidStream(Fail(500, "exploded", type="server_error")), "", id="error-event"),
    ],
)
def test_a_broken_stream_is_carried_on_by_the_next_deployment_as_one_stream(
    sdk: OpenAI,
    deploy: Deploy,
    upstreams: FakeFleet,
    settle: Settle,
    tag: str,
    trouble: DropMidStream | Stall | FailMidStream,
    relayed: str,
) -> None:
    upstreams[0].script(f"sr-{tag}", trouble)
    upstreams[1].script(f"sr-{tag}", Reply(CONTINUED, prompt_tokens=20))
    model, routes = model_for(deploy, tag, upstreams, recovery=True)
    settle()

    read = Read(sdk, model, stream_options={"include_usage": True})

    assert read.error_code is None
    assert read.text == relayed + CONTINUED
    assert len({chunk.id for chunk in read.chunks}) == 1
    assert len({(chunk.created, chunk.model) for chunk in read.chunks}) == 1
    assert read.chunks[0].model == model
    assert read.roles == ["assistant"]
    assert read.finish_reasons == ["stop"]
    usage = read.chunks[-1].usage
    assert usage is not None
    assert not read.chunks[-1].choices
    assert usage.prompt_tokens > 20  # the continuation's prompt, plus the first attempt's
    if relayed:
        assert usage.completion_tokens > len(CONTINUED.split())  # the continuation's words, plus those relayed
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [continuation] = upstreams[1].received(f"sr-{tag}")
    prefix = [{"role": "assistant", "content": relayed}] if relayed else []
    assert continuation.messages == HI + prefix
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.attempts, row.deployment_id) == (200, 2, routes[1].pk)
    assert (row.prompt_tokens, row.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)


def test_a_stream_with_nowhere_left_to_go_ends_with_the_error_event(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstreams[0].script(f"sr-{tag}", DropMidStream(after=3))
    upstreams[1].script(f"sr-{tag}", Fail(503, "overloaded", type="server_error"))
    model, _ = model_for(deploy, tag, upstreams, recovery=True)
    settle()

    read = Read(sdk, model)

    assert read.text == "this stream"
    assert read.error_code == "upstream_unreachable"
    assert upstreams.served_by(f"sr-{tag}") == ["fake-1", "fake-2"]
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.attempts) == (502, 2)


def test_an_anthropic_deployment_carries_the_stream_on_from_native_prefill(
    sdk: OpenAI,
    deploy: Deploy,
    upstreams: FakeFleet,
    anthropic_upstream: FakeAnthropic,
    anthropic_provider: Provider,
    settle: Settle,
    tag: str,
) -> None:
    upstreams[0].script(f"sr-{tag}", DropMidStream(after=3))
    anthropic_upstream.script(f"claude-sr-{tag}", AnthropicReply(CONTINUED))
    model = f"gpt-sr-{tag}"
    deploy(model, f"sr-{tag}", urls=[upstreams[0].base_url], mid_stream_recovery=True)
    claude = make_route(provider=anthropic_provider, public_id=model, upstream_model=f"claude-sr-{tag}", priority=1)
    settle()

    read = Read(sdk, model)

    assert read.error_code is None
    assert read.text == "this stream" + CONTINUED
    assert len({chunk.id for chunk in read.chunks}) == 1
    assert read.finish_reasons == ["stop"]
    [continuation] = anthropic_upstream.received(f"claude-sr-{tag}")
    assert continuation.messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "this stream"}]}
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.attempts, row.deployment_id) == (200, 2, claude.pk)


# --- tool calls are never carried on ---


class ToolCallUpstream(FakeUpstream):
    """Streams a tool call (its name, then its arguments a fragment at a time) wherever it would stream text."""

    def chat_events(self, model: str, reply: Reply, *, include_usage: bool) -> list[bytes]:
        head = {"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return json.dumps({**head, "choices": [choice]}).encode()

        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        fragments = [{"index": 0, "function": {"arguments": part}} for part in ('{"city"', ': "Paris"}')]
        return [
            chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
            *(chunk({"tool_calls": [fragment]}) for fragment in fragments),
            chunk({}, "tool_calls"),
        ]


@pytest.fixture(scope="module")
def tool_upstream() -> Iterator[ToolCallUpstream]:
    fake = ToolCallUpstream(label="tools")
    fake.start()
    yield fake
    fake.stop()


def test_a_tool_call_stream_is_not_carried_on(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, tool_upstream: ToolCallUpstream, settle: Settle, tag: str
) -> None:
    tool_upstream.script(f"sr-{tag}", Stall(after=2))
    model = f"gpt-sr-{tag}"
    urls = [tool_upstream.base_url, upstreams[1].base_url]
    deploy(model, f"sr-{tag}", urls=urls, stall_timeout=STALL_TIMEOUT, mid_stream_recovery=True)
    settle()

    read = Read(sdk, model)

    assert read.chunks
    assert read.chunks[0].choices[0].delta.tool_calls
    assert read.error_code == "upstream_timeout"
    assert upstreams[1].received(f"sr-{tag}") == []
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.error_type, row.attempts) == (504, "upstream_stall", 1)
