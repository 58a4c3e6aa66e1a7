"""One `POST /v1/responses` through the routing loop, answered whole or as the Responses API's events.

The request is read as a chat completions call (gateway.responses.requests),
so it is checked, admitted, limited, routed, failed over and written to the
ledger exactly as `/v1/chat/completions` is: one CallSession, one ledger row
(recorded under the `chat` operation, with the chat body's prompt count). Each
attempt goes to the deployment as chat completions, or as the client's own
Responses request where the deployment's server has /v1/responses
(gateway.responses.passthrough); the answer is then turned into a `response`
object or its events here. Ensembles are not offered on this endpoint.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from billing.metering import usd
from gateway import routing, routing_resume
from gateway.accounting import Call, CallSession
from gateway.errors import UpstreamError
from gateway.extensions import Extensions
from gateway.intake import json_call
from gateway.relay import Opened, Whole, attempt, put_headers
from gateway.responses import passthrough
from gateway.responses.answers import new_id, response_from_chat, usage_for_chat
from gateway.responses.events import ChatToEvents, data_of, event_frame
from gateway.responses.requests import chat_body, validate_responses_request
from gateway.responses.storage import store_later
from gateway.snapshot import Snapshot
from gateway.sse import DONE, EventStream
from gateway.streaming import relay_stream
from gateway.validation import validate_chat_request
from providers.facade import RouteInfo


async def read_call(request: HttpRequest) -> tuple[Call, Snapshot, Extensions, dict[str, Any]]:
    """The call (a chat completions body), its snapshot and extensions, and the client's Responses request."""
    asked: dict[str, Any] = {}

    def as_chat(body: dict[str, Any]) -> None:
        # json_call checks and routes the body it validated: it must be chat's by then.
        validate_responses_request(body)
        asked.update(body)
        chat = chat_body(body)
        validate_chat_request(chat)
        body.clear()
        body.update(chat)

    call, snapshot, ext = await json_call(request, "chat", as_chat)
    asked["model"] = call.body["model"]  # `auto` resolved
    return call, snapshot, ext, asked


def _sender(asked: dict[str, Any]) -> routing.Send:
    """Each attempt: the client's request on a deployment that serves /v1/responses, else chat completions."""

    async def send(call: Call, route: RouteInfo, **options: Any) -> Whole | Opened:
        if passthrough.serves_responses(route.provider):
            return await passthrough.attempt(
                call, route, asked, first_byte=options.get("first_byte"), stall=options.get("stall")
            )
        return await attempt(call, route, **options)

    return send


async def serve_response(
    call: Call, snapshot: Snapshot, ext: Extensions, asked: dict[str, Any]
) -> HttpResponse | EventStream:
    """Admit the call once, route it, and answer with a `response` object or its events."""
    created_at = int(time.time())
    routed = await routing.route(call, snapshot, ext, _sender(asked))
    session, result, headers = routed.session, routed.result, routed.headers
    passed = passthrough.serves_responses(call.route.provider)
    if isinstance(result, Whole):
        return _answer(session, result, headers, asked, passed=passed, created_at=created_at)
    resume = None if passed else routed.resume()
    return _stream(
        session, result, routed.tried, headers, _Events(session, asked, passed=passed, created_at=created_at), resume
    )


def _answer(
    session: CallSession,
    whole: Whole,
    headers: Mapping[str, str],
    asked: dict[str, Any],
    *,
    passed: bool,
    created_at: int,
) -> HttpResponse:
    """A whole answer as a `response` object: usage noted, the call finished, its cost in `x-portico-cost`."""
    call = session.call
    payload = whole.body
    if payload is None:
        try:
            payload = orjson.loads(whole.content)
        except orjson.JSONDecodeError:
            payload = None
    if not isinstance(payload, dict):
        error = UpstreamError(f"The upstream provider '{call.route.provider.name}' sent a malformed answer.")
        session.fail(error)
        raise error
    if passed:
        response = payload
        call.usage = usage_for_chat(payload.get("usage"))
    else:
        call.usage = payload.get("usage")
        response = response_from_chat(payload, asked, response_id=new_id("resp"), created_at=created_at)
    cost = session.close()
    _keep(call, asked, response)
    answer = HttpResponse(orjson.dumps(response), content_type="application/json")
    put_headers(answer, headers)
    put_headers(answer, {"x-portico-cost": usd(cost)})
    return answer


def _keep(call: Call, asked: dict[str, Any], response: dict[str, Any]) -> None:
    if asked.get("store", True) and response.get("id") and response.get("status") != "failed":
        store_later(tenant_id=call.grant.tenant_id, key_id=call.grant.key_id, response=response)


class _Events:
    """The client's events from the frames the relay writes: chat chunks turned into events, or passed-through
    events named; either way the relay's closing [DONE] is dropped (a Responses stream has none)."""

    def __init__(self, session: CallSession, asked: dict[str, Any], *, passed: bool, created_at: int) -> None:
        self.call = session.call
        self.asked = asked
        self.passed = passed
        self.writer = ChatToEvents(asked, response_id=new_id("resp"), model=asked["model"], created_at=created_at)

    async def __call__(self, frames: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        async with contextlib.aclosing(frames):
            if not self.passed:
                yield self.writer.start()
            async for block in frames:
                out = self._translate(block)
                if out:
                    yield out

    def _translate(self, block: bytes) -> bytes:
        out = []
        for data in data_of(block):
            if data == DONE[6:-2]:
                if not self.passed:
                    out.append(self.writer.finish())
                    self._keep(self.writer.final)
                continue
            if data.startswith(b'{"error"'):  # the relay's own error frame: the stream broke
                out.append(self.writer.fail(orjson.loads(data)["error"]))
                continue
            if self.passed:
                out.append(event_frame(data))
                if data.find(b'"response.completed"', 0, 60) >= 0:
                    self._keep(orjson.loads(data).get("response"))
            else:
                out.append(self.writer.feed(orjson.loads(data)))
        return b"".join(out)

    def _keep(self, response: dict[str, Any] | None) -> None:
        if response is not None:
            _keep(self.call, self.asked, response)


def _stream(
    session: CallSession,
    opened: Opened,
    tried: routing.Attempt,
    headers: Mapping[str, str],
    events: _Events,
    resume: routing_resume.StreamResume | None,
) -> EventStream:
    async def release() -> None:
        # As gateway.routing's streams: the upstream closed, the attempt and the call ended, on every exit.
        await opened.aclose()
        tried.drop()
        await session.release()

    frames = relay_stream(session, opened, tried.end, resume)
    stream = EventStream(events(frames), release=release)
    put_headers(stream, headers)
    return stream


async def create_response(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve_response(*await read_call(request))
