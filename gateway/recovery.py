"""Stall detection and mid-stream recovery: the pieces gateway.relay uses once a stream has begun.

A stall is an upstream gone silent while a stream is being read. `StallWatch`
ends the read after the stall timeout rather than after the provider's read
timeout. It costs a stream one timer, not one per event: a read only moves a
timestamp (`since`), and the timer, when it fires, either finds the read older
than the timeout and cancels it, or sets itself again for when it would be.

Mid-stream recovery (opt-in per public model) continues a stream that broke
after its first byte from another deployment. What the client has seen so far
(`Relayed`) decides whether that is possible: a single choice of chat text,
no tool call, no finish yet. The continuation (`Continuation`) sends the
original messages plus the text relayed so far as a last assistant message:
Anthropic-kind deployments take it as native prefill, OpenAI-kind ones as a
partial answer to carry on, which a model may or may not honour. `Resumed`
dresses the continuation's chunks as the first stream's (its id, created and
model; no second role; usage summed over every attempt), so the client reads
one stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from billing.metering import Usage
from gateway.accounting import Call, counted_usage, prompt_estimate
from gateway.errors import UpstreamError
from providers.adapters.base import StreamTranslator

NEVER = math.inf  # `StallWatch.since` while nothing is being read
STALL = "upstream_stall"  # the ledger's error type for a stream ended by a stall
_ERROR_FRAME = b'data: {"error"'


class StallWatch:
    """Cancels the task reading an upstream once a read has waited `seconds`; None watches nothing.

    The reader sets `since = clock()` before each read and `since = NEVER` after
    it, so time spent handing a chunk to a slow client never counts as a stall.
    """

    __slots__ = ("_handle", "_loop", "_task", "clock", "fired", "seconds", "since")

    def __init__(self, seconds: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        # A C function, not the loop's own `time()` (a Python method): it is read before every read.
        self.clock = time.monotonic
        self.since = NEVER
        self.fired = False
        self.seconds = seconds
        self._handle: asyncio.TimerHandle | None = None
        if seconds is not None:
            self._handle = self._loop.call_later(seconds, self._check)

    def _check(self) -> None:
        assert self.seconds is not None
        wait = self.since + self.seconds - self.clock()
        if wait <= 0 and self._task is not None:
            self.fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_later(min(wait, self.seconds), self._check)

    def stalled(self) -> bool:
        """After a CancelledError: whether this watch caused it alone (then the task is no longer cancelling)."""
        self.since = NEVER
        if not self.fired or self._task is None:
            return False
        self.fired = False
        # Someone else (the client leaving, a deadline) may have cancelled the task too: theirs wins.
        return self._task.uncancel() == 0

    def restart(self, seconds: float | None) -> None:
        self.close()
        self.seconds, self.fired, self.since = seconds, False, NEVER
        if seconds is not None:
            self._handle = self._loop.call_later(seconds, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def stall_error(provider: str, seconds: float | None) -> UpstreamError:
    """Shaped as a timeout for the client; the ledger records it as a stall."""
    error = UpstreamError(
        f"The upstream provider '{provider}' sent nothing for {seconds or 0:g} s mid-stream.",
        status=504,
        code="upstream_timeout",
    )
    error.reason = STALL
    return error


def held_error(out: bytes) -> tuple[bytes, bytes]:
    """Split a batch of frames before the upstream's error event: what may be relayed, and the error held back."""
    at = out.find(_ERROR_FRAME)
    return (out, b"") if at < 0 else (out[:at], out[at:])


@dataclass(frozen=True, slots=True)
class Relayed:
    """What the client has read of a stream: its text, and the id, created and model a continuation keeps."""

    text: str
    head: dict[str, Any]


def relayed(outputs: Iterable[bytes]) -> Relayed | None:
    """The stream so far, if a continuation can carry it on; None after a tool call, a finish, or a second choice."""
    text: list[str] = []
    head: dict[str, Any] = {}
    for payload in outputs:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None  # relayed as the upstream sent it: nothing a continuation could follow
        if not isinstance(chunk, dict):
            return None
        if not head and chunk.get("id") is not None:
            head = {"id": chunk["id"], "created": chunk.get("created"), "model": chunk.get("model")}
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if choice.get("index", 0) != 0 or delta.get("tool_calls") or choice.get("finish_reason") is not None:
                return None
            text.append(delta.get("content") or "")
    return Relayed("".join(text), head) if head else None


@dataclass(frozen=True, slots=True)
class Continuation:
    """The request that carries a broken stream on, and what its chunks must look like."""

    body: dict[str, Any]
    head: dict[str, Any]
    carried: dict[str, int]  # the tokens of every attempt before this one


class Carry:
    """The usage of a stream's broken attempts, counted by Portico: an attempt cut short reports none.

    Each attempt's prompt is the call's plus the text relayed before it began
    (its assistant prefix); the completion is the text relayed since.
    """

    __slots__ = ("completion", "prompt")

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0

    def continuation(self, call: Call) -> Continuation | None:
        if call.operation != "chat" or (call.body.get("n") or 1) != 1:
            return None
        so_far = relayed(call.outputs)
        if so_far is None:
            return None
        prompt = prompt_estimate(call) + self.completion  # the call's prompt and the prefix this attempt was given
        completion = counted_usage(call).completion_tokens
        # Priced at the broken attempt's own deployment: the continuation may be served by a dearer one.
        call.earlier = (
            *call.earlier,
            (call.route.id, Usage(prompt_tokens=prompt, completion_tokens=completion - self.completion)),
        )
        self.prompt += prompt
        self.completion = completion
        body = dict(call.body)
        if so_far.text:
            body["messages"] = [*body.get("messages", ()), {"role": "assistant", "content": so_far.text}]
        carried = {"prompt_tokens": self.prompt, "completion_tokens": self.completion}
        return Continuation(body, so_far.head, carried)


class Resumed:
    """A continuation's translator whose chunks read as the first stream's.

    Only a stream that broke ever gets one, so parsing each chunk costs nothing
    on the common path.
    """

    __slots__ = ("carried", "head", "inner")

    def __init__(self, inner: StreamTranslator, continuation: Continuation) -> None:
        self.inner = inner
        self.head = continuation.head
        self.carried = continuation.carried

    @property
    def done(self) -> bool:
        return self.inner.done

    @property
    def failed(self) -> bool:
        return self.inner.failed

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.inner.usage
        return None if usage is None else summed(usage, self.carried)

    def feed(self, event: bytes) -> Iterable[bytes]:
        out = []
        for payload in self.inner.feed(event):
            chunk = orjson.loads(payload)
            if "error" in chunk:
                out.append(payload)
                continue
            chunk.update(self.head)
            choices = chunk.get("choices") or ()
            for choice in choices:
                (choice.get("delta") or {}).pop("role", None)
            if choices and not any(_says_something(choice) for choice in choices):
                continue  # the continuation's opening role chunk: the client has had one
            if chunk.get("usage"):
                chunk["usage"] = summed(chunk["usage"], self.carried)
            out.append(orjson.dumps(chunk))
        return out


def _says_something(choice: dict[str, Any]) -> bool:
    return choice.get("finish_reason") is not None or any((choice.get("delta") or {}).values())


def summed(usage: dict[str, Any], carried: dict[str, int]) -> dict[str, Any]:
    """OpenAI's usage object with the earlier attempts' tokens added."""
    total = dict(usage)
    for name, count in carried.items():
        total[name] = _count(total.get(name)) + count
    total["total_tokens"] = _count(total.get("prompt_tokens")) + _count(total.get("completion_tokens"))
    return total


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0
