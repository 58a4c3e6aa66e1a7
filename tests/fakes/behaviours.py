"""What the fake OpenAI upstream (`tests.fakes.openai_upstream`) can be scripted to do.

A behaviour is a frozen value; the server holds no state in it. Most say how
to answer one request:

    Reply("Hi", delay=0.1, first_byte=0.5)      answer; wait 0.5 s before the first byte, 0.1 s between events
    Reply(headers={...})                          answer, with these response headers (rate-limit headers, say)
    Echo()                                        answer with the last user message
    Fail(503)   rate_limited(2)   exhausted()    an OpenAI error: a 5xx, a 429 with Retry-After, a spent quota
    Fail(502, raw="<html>Bad Gateway</html>")    an error whose body is not JSON, as a load balancer's is
    QuoteHeader("authorization")                  an error whose every field quotes a request header
    FailMidStream(Fail(500))                      stream the role, then an error event
    Hang()                                        never send a byte, streamed or not
    Stall(after=2)   Stall(after=2, seconds=1)   stream 2 events then go silent, for ever or for 1 s
    DropMidStream(after=2, reset=True)            stream 2 events then close (or reset) the connection
    CloseBeforeAnswer(reset=True)                 close (or reset) the connection before any byte
    Deviate(Reply("Hi"), {"zero_usage"})          answer as a loosely compatible server does (see DEVIATIONS)

The others choose, request by request, one of those (counting the requests
for the scripted model since it was scripted), which lets a test script a
recovery or a flaky upstream once instead of re-scripting between requests:

    Cycle(Fail(500), Reply())                     fail every other request, the first one first
    Steps(Fail(500), Fail(500), Reply())          fail twice, then answer for ever
    Flaky(0.3)                                    fail a deterministic 30 % of the requests with a 500

A refused connection is not a behaviour (no server answers it): see
`tests.fakes.fleet.refused_port`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

# A labelled server (`FakeUpstream(label=...)`) answers a `Reply` with this content as "served by <label>".
DEFAULT_CONTENT = "Hello from the fake upstream."


@dataclass(frozen=True)
class Reply:
    """Answer normally: JSON, or SSE if the request asks to stream (one event per word)."""

    content: str = DEFAULT_CONTENT
    delay: float = 0.0  # seconds between two stream events
    prompt_tokens: int = 11
    first_byte: float = 0.0  # seconds before the status line, streamed or not
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Echo:
    """Answer like `Reply`, with the last user message as the content: tells concurrent requests apart."""

    delay: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error and OpenAI's error body (or `raw`, sent as it is, as text/html)."""

    status: int
    message: str = "The fake upstream refused the request."
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: str | None = None


@dataclass(frozen=True)
class QuoteHeader:
    """Answer with an HTTP error whose message, type, param and code all quote a header of the request."""

    header: str
    status: int = 400


@dataclass(frozen=True)
class FailMidStream:
    """Stream the opening chunk, then `error` as an error event, and end the stream as OpenAI does after one."""

    error: Fail


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer."""


@dataclass(frozen=True)
class Stall:
    """Send the status line and `after` events of the answer, then nothing for `seconds` (None: until the
    client leaves), then the rest. Not streamed, the headers go out and the body waits instead."""

    after: int = 1
    seconds: float | None = None
    content: str = DEFAULT_CONTENT


@dataclass(frozen=True)
class DropMidStream:
    """Start a stream, send `after` events, then close the socket without ending the chunked body
    (with `reset`, abort it: the client reads a connection reset rather than an early end)."""

    after: int = 2
    content: str = "this stream will never finish properly"
    reset: bool = False


@dataclass(frozen=True)
class CloseBeforeAnswer:
    """Close the connection without sending a single byte of answer (with `reset`, abort it)."""

    reset: bool = False


# How OpenAI-compatible servers seen in the wild differ from OpenAI's shapes; `Deviate` applies any of them.
DEVIATIONS = frozenset(
    {
        "no_logprobs",  # choices without `logprobs`
        "no_refusal",  # messages without `refusal`
        "null_tool_calls",  # `"tool_calls": null` in messages and deltas
        "null_fingerprint",  # `"system_fingerprint": null`
        "null_usage_details",  # `"prompt_tokens_details": null` and `"completion_tokens_details": null`
        "zero_usage",  # prompt and completion tokens reported as 0
        "no_usage",  # no usage at all, even when stream usage was asked for
        "cache_creation",  # Anthropic-style `prompt_tokens_details.cache_creation_tokens` (with cached tokens)
        "usage_on_last_choice",  # stream usage on the finishing chunk rather than a chunk of its own
    }
)


@dataclass(frozen=True)
class Deviate:
    """Answer as `reply` does, with some of `DEVIATIONS` (all of them but the usage ones by default)."""

    reply: Reply = field(default_factory=Reply)
    deviations: frozenset[str] = frozenset({"no_logprobs", "no_refusal", "null_tool_calls", "null_fingerprint"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "deviations", frozenset(self.deviations))
        if unknown := self.deviations - DEVIATIONS:
            raise ValueError(f"unknown deviations: {sorted(unknown)}")


@dataclass(frozen=True)
class Quirks:
    """Answer as `reply` does, as a server that refuses some of OpenAI's request fields (400, as vLLM or Groq
    word it) and, without `serves_completions`, has no legacy /completions (404)."""

    reply: Reply = field(default_factory=Reply)
    refuses: frozenset[str] = frozenset()  # top-level request fields: "stream_options", "max_completion_tokens"
    serves_completions: bool = True


Behaviour = (
    Reply
    | Echo
    | Fail
    | QuoteHeader
    | FailMidStream
    | Hang
    | Stall
    | DropMidStream
    | CloseBeforeAnswer
    | Deviate
    | Quirks
)


@dataclass(frozen=True, init=False)
class Cycle:
    """The n-th request (from 0) gets `behaviours[n % len(behaviours)]`."""

    behaviours: tuple[Behaviour | Choice, ...]

    def __init__(self, *behaviours: Behaviour | Choice) -> None:
        if not behaviours:
            raise ValueError("Cycle needs at least one behaviour")
        object.__setattr__(self, "behaviours", behaviours)


@dataclass(frozen=True, init=False)
class Steps:
    """The n-th request (from 0) gets `behaviours[n]`, and every request after the last gets the last."""

    behaviours: tuple[Behaviour | Choice, ...]

    def __init__(self, *behaviours: Behaviour | Choice) -> None:
        if not behaviours:
            raise ValueError("Steps needs at least one behaviour")
        object.__setattr__(self, "behaviours", behaviours)


@dataclass(frozen=True)
class Flaky:
    """Fail a share `p` of the requests, chosen by a seeded generator: the same requests fail in every run."""

    p: float
    fail: Behaviour = Fail(500, "The fake upstream failed.", type="server_error")
    otherwise: Behaviour = Reply()
    seed: int = 0

    def fails(self, index: int) -> bool:
        # One generator per request index keeps the choice independent of how requests interleave;
        # a string seed is hashed (SHA-512), so neighbouring indexes draw unrelated numbers.
        return random.Random(f"{self.seed}:{index}").random() < self.p


Choice = Cycle | Steps | Flaky
Script = Behaviour | Choice


def resolve(script: Script, index: int) -> Behaviour:
    """The behaviour the `index`-th request (from 0) of a script gets."""
    while not isinstance(script, Behaviour):
        if isinstance(script, Cycle):
            script = script.behaviours[index % len(script.behaviours)]
        elif isinstance(script, Steps):
            script = script.behaviours[min(index, len(script.behaviours) - 1)]
        else:
            script = script.fail if script.fails(index) else script.otherwise
    return script


def rate_limited(retry_after: float = 1, message: str = "Rate limit reached for requests.") -> Fail:
    """OpenAI's 429 for too many requests, with `Retry-After` in seconds."""
    headers = {"retry-after": f"{retry_after:g}"}
    return Fail(429, message, type="requests", code="rate_limit_exceeded", headers=headers)


def exhausted(reset: str = "1s", retry_after: float | None = None) -> Fail:
    """OpenAI's 429 when the request quota is spent: its rate-limit headers say none is left until `reset`."""
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"}
    headers["x-ratelimit-reset-requests"] = reset
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    message = "Rate limit reached for requests per min (RPM): Limit 60, Used 60, Requested 1."
    return Fail(429, message, type="requests", code="rate_limit_exceeded", headers=headers)
