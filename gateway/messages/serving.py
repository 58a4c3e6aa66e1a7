"""A Messages call through the routing loop: one admission, the loop's deployments, one ledger line.

The call is the chat call its request stands for (gateway.messages.requests),
so the limits, the budget, the routing and the ledger treat it exactly as a
/v1/chat/completions call. Only what one attempt sends differs, per deployment
(`Exchange.send`):

    Anthropic-kind deployment   the client's own body, passed through (gateway.messages.passthrough)
    any other kind              the chat form, through the adapter as usual (gateway.relay.attempt)

and so the answer's way back: a pass-through message or stream is the client's
already; a chat completion or chunk stream is turned into Anthropic's.
Mid-stream recovery carries on a translated stream only: a continuation is
always a chat request. A model answered by an ensemble is served by the loop's
own entry point (gateway.routing.serve), translated.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from django.http import HttpResponse

from billing.metering import usd
from gateway import relay, routing, routing_ensembles
from gateway.accounting import Call, CallSession
from gateway.errors import InvalidRequest
from gateway.extensions import Extensions
from gateway.messages.answers import message_from_completion
from gateway.messages.events import ChunkEvents
from gateway.messages.passthrough import Outbound, attempt
from gateway.messages.reframe import reframed
from gateway.recovery import Continuation
from gateway.relay import Opened, Whole, put_headers
from gateway.snapshot import Snapshot
from gateway.sse import EventStream
from providers.facade import RouteInfo

ANTHROPIC = "anthropic"


class Exchange:
    """One Messages request in both its forms, and which one the deployment that answered was sent."""

    __slots__ = ("outbound", "passthrough", "refusal", "stop_sequences", "thinking")

    def __init__(self, outbound: Outbound, refusal: InvalidRequest | None) -> None:
        self.outbound = outbound
        self.refusal = refusal  # why the chat form cannot stand for the request, if it cannot
        self.passthrough = False
        body = outbound.body
        self.stop_sequences: list[str] = list(body.get("stop_sequences") or ())
        self.thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")

    async def send(
        self,
        call: Call,
        route: RouteInfo,
        *,
        first_byte: float | None = None,
        stall: float | None = None,
        continuation: Continuation | None = None,
    ) -> Whole | Opened:
        """The routing loop's attempt on `route` (gateway.routing.Send)."""
        self.passthrough = continuation is None and route.provider.kind == ANTHROPIC
        if self.passthrough:
            return await attempt(call, route, self.outbound, first_byte=first_byte, stall=stall)
        if self.refusal is not None:
            raise self.refusal
        return await relay.attempt(call, route, first_byte=first_byte, stall=stall, continuation=continuation)

    def chunk_events(self, call: Call) -> ChunkEvents:
        return ChunkEvents(
            message_id=message_id(call),
            model=call.route.public_id,
            stop_sequences=self.stop_sequences,
            thinking=self.thinking,
            input_tokens=call.prompt_estimate or 0,
        )

    def message(self, call: Call, completion: bytes) -> bytes:
        """A translated deployment's whole answer as Anthropic's message."""
        message = message_from_completion(
            orjson.loads(completion),
            message_id=message_id(call),
            model=call.route.public_id,
            stop_sequences=self.stop_sequences,
            thinking=self.thinking,
        )
        return orjson.dumps(message)


def message_id(call: Call) -> str:
    return "msg_" + call.request_id.removeprefix("req_")


async def serve(call: Call, snapshot: Snapshot, ext: Extensions, exchange: Exchange) -> HttpResponse | EventStream:
    """Admit the call once, route it, and answer in Anthropic's shape (the loop of gateway.routing.serve)."""
    if call.model.ensemble and routing_ensembles.ensemble_routes(call, snapshot, ext):
        return _translated(call, exchange, await routing.serve(call, snapshot, ext))
    routed = await routing.route(call, snapshot, ext, exchange.send)
    session, result = routed.session, routed.result
    headers = {**routed.headers, "request-id": call.request_id}
    if isinstance(result, Whole):
        return _answer(session, result, headers, exchange)
    resume = None if exchange.passthrough else routed.resume()
    stream = routing._stream(session, result, routed.tried, headers, resume)
    return reframed(stream, None if exchange.passthrough else exchange.chunk_events(call))


def _answer(session: CallSession, whole: Whole, headers: Mapping[str, str], exchange: Exchange) -> HttpResponse:
    """A whole answer: usage noted, the call finished, its cost in `x-portico-cost`."""
    call, content = session.call, whole.content
    if not exchange.passthrough:  # a pass-through attempt noted its usage already
        call.usage = (whole.body if whole.body is not None else orjson.loads(content)).get("usage")
        content = exchange.message(call, content)
    cost = session.close()
    response = HttpResponse(content, content_type="application/json")
    put_headers(response, headers)
    put_headers(response, {"x-portico-cost": usd(cost)})
    return response


def _translated(call: Call, exchange: Exchange, answer: HttpResponse | EventStream) -> HttpResponse | EventStream:
    """An answer in OpenAI's shape (an ensemble's), in Anthropic's."""
    if isinstance(answer, EventStream):
        return reframed(answer, exchange.chunk_events(call))
    answer.content = exchange.message(call, answer.content)
    answer["request-id"] = call.request_id
    return answer
