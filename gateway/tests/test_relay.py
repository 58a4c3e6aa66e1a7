"""Pieces of the relay that need no server: how an upstream's error answer reaches the client, how a stall is
noticed, and how a broken stream's continuation is dressed as the stream it carries on."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping

import orjson
import pytest

from gateway.recovery import NEVER, Continuation, Resumed, StallWatch, held_error, relayed
from gateway.relay import _failure
from gateway.sse import frame
from providers.adapters.openai import PassThrough
from providers.facade import RouteInfo
from providers.tests.factories import make_provider_info


class ErrorAnswer:
    def __init__(self, status: int, body: dict[str, object]) -> None:
        self.status_code = status
        self.headers: Mapping[str, str] = {}
        self._body = orjson.dumps(body)
        self.closed = False

    async def aread(self) -> bytes:
        return self._body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aclose(self) -> None:
        self.closed = True


ROUTE = RouteInfo(
    id=1,
    public_id="house-llama",
    provider=dataclasses.replace(make_provider_info(), kind="ollama"),
    upstream_model="llama3.2:3b",
    owned_by="portico",
    created=0,
    context_window=None,
    max_output_tokens=None,
    capabilities=frozenset({"chat"}),
)


async def test_an_upstream_error_names_the_public_model_not_the_providers() -> None:
    answer = ErrorAnswer(404, {"error": 'model "llama3.2:3b" not found, try pulling it first'})

    error = await _failure(ROUTE, answer)

    assert error.message == 'model "house-llama" not found, try pulling it first'
    assert (error.status, error.code) == (404, "model_not_found")
    assert answer.closed


# --- stalls and mid-stream recovery (gateway.recovery) ---


async def test_a_read_that_waits_past_the_stall_timeout_is_cancelled_as_a_stall() -> None:
    watch = StallWatch(0.0)  # due as soon as a read has begun
    watch.since = watch.clock()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()  # an upstream that sends nothing

    assert watch.stalled()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    watch.close()


async def test_time_spent_handing_a_chunk_to_the_client_is_not_a_stall() -> None:
    watch = StallWatch(0.0)
    watch.since = NEVER  # between two reads: a slow client, not a silent upstream
    for _ in range(10):
        await asyncio.sleep(0)  # the watch's timer comes round on every turn of the loop, and lets it be

    assert not watch.fired
    watch.close()


async def test_a_stall_and_a_client_leaving_at_once_count_as_the_client_leaving() -> None:
    task = asyncio.current_task()
    assert task is not None
    watch = StallWatch(0.0)  # due at once: fires in the same turn of the loop as the disconnect below
    watch.since = watch.clock()
    asyncio.get_running_loop().call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.Event().wait()

    assert task.cancelling() == 2
    assert not watch.stalled()
    assert task.uncancel() == 0
    watch.close()


def chunk(delta: dict[str, object], *, finish: str | None = None, index: int = 0, id: str = "one") -> bytes:  # noqa: A002
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return orjson.dumps({"id": id, "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]})


@pytest.mark.parametrize(
    ("outputs", "text"),
    [
        pytest.param([chunk({"role": "assistant", "content": ""}), chunk({"content": "Once"})], "Once", id="text"),
        pytest.param([chunk({"role": "assistant", "content": ""})], "", id="role-only"),
        pytest.param([chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]})], None, id="tool-call"),
        pytest.param([chunk({"content": "Done"}), chunk({}, finish="stop")], None, id="finished"),
        pytest.param([chunk({"content": "a"}), chunk({"content": "b"}, index=1)], None, id="two-choices"),
        pytest.param([b"not json"], None, id="unreadable"),
    ],
)
def test_what_was_relayed_is_carried_on_only_when_a_continuation_can_join_it(
    outputs: list[bytes], text: str | None
) -> None:
    so_far = relayed(outputs)

    assert (so_far.text if so_far is not None else None) == text


def test_an_upstream_error_event_is_held_back_from_the_frames_before_it() -> None:
    out = frame(chunk({"content": "Hi"})) + frame(b'{"error":{"message":"boom"}}')

    sent, held = held_error(out)

    assert sent == frame(chunk({"content": "Hi"}))
    assert held == frame(b'{"error":{"message":"boom"}}')
    assert held_error(sent) == (sent, b"")


def test_a_continuations_chunks_read_as_the_first_streams() -> None:
    head = {"id": "first", "created": 7, "model": "house-model"}
    continuation = Continuation({}, head, {"prompt_tokens": 11, "completion_tokens": 3})
    resumed = Resumed(PassThrough("house-model", include_usage=True), continuation)
    usage = {"prompt_tokens": 15, "completion_tokens": 2, "total_tokens": 17}

    out = [
        orjson.loads(piece)
        for event in (
            chunk({"role": "assistant", "content": ""}, id="second"),
            chunk({"content": " on"}, id="second"),
            chunk({}, finish="stop", id="second"),
            orjson.dumps({"id": "second", "created": 9, "model": "m", "choices": [], "usage": usage}),
        )
        for piece in resumed.feed(event)
    ]

    assert [(c["id"], c["created"], c["model"]) for c in out] == [("first", 7, "house-model")] * 3
    assert [c["choices"][0]["delta"] for c in out[:2]] == [{"content": " on"}, {}]
    assert out[2]["usage"] == {"prompt_tokens": 26, "completion_tokens": 5, "total_tokens": 31}
    assert resumed.usage == out[2]["usage"]
