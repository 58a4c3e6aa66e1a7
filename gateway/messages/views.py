"""The view logic of the Messages surface: read the request, build the call, serve it, answer in Anthropic's shape.

Every refusal, from a missing key to a spent budget or an upstream failure,
leaves here as Anthropic's error body with its status (gateway.messages.errors);
the key is read here rather than by the API's auth callback, whose refusals are OpenAI's.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from gateway.errors import InvalidRequest, PorticoError
from gateway.extensions import read_extensions
from gateway.intake import check, find_model, new_call, require_operation
from gateway.messages.auth import messages_grant
from gateway.messages.counting import input_tokens
from gateway.messages.errors import error_response
from gateway.messages.passthrough import Outbound
from gateway.messages.requests import chat_request
from gateway.messages.serving import Exchange, serve
from gateway.messages.validation import validate_count_request, validate_message_request
from gateway.queueing.wish import QueueWish, queue_wish
from gateway.snapshot import store
from gateway.sse import EventStream
from tenants.facade import KeyGrant


async def create_message(request: HttpRequest) -> HttpResponse | EventStream:
    try:
        return await _create(request)
    except PorticoError as exc:
        return error_response(exc)


async def count_tokens(request: HttpRequest) -> HttpResponse:
    try:
        return await _count(request)
    except PorticoError as exc:
        return error_response(exc)


async def _create(request: HttpRequest) -> HttpResponse | EventStream:
    grant = await messages_grant(request)
    body = json_body(request)
    ext = read_extensions(body, request.META, max_timeout=settings.PORTICO_MAX_REQUEST_TIMEOUT)
    validate_message_request(body)
    translation = chat_request(body)
    snapshot = await store.get()
    model = find_model(snapshot, grant, body["model"])
    check(model, "chat", translation.body)
    call = new_call(request, model, "chat", translation.body)
    call.queue = _queue_wish(request, translation.body, grant)
    if ext.request_id:
        call.client_request_id = ext.request_id
    return await serve(call, snapshot, ext, Exchange(outbound(request, body), translation.refusal))


async def _count(request: HttpRequest) -> HttpResponse:
    grant = await messages_grant(request)
    body = json_body(request)
    validate_count_request(body)
    model = find_model(await store.get(), grant, body["model"])
    require_operation(model, "chat")
    call = new_call(request, model, "chat", chat_request(body).body)
    counted = await input_tokens(call, outbound(request, body))
    return HttpResponse(orjson.dumps({"input_tokens": counted}), content_type="application/json")


def json_body(request: HttpRequest) -> dict[str, Any]:
    media_type = request.META.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest("Content-Type must be application/json.")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def outbound(request: HttpRequest, body: dict[str, Any]) -> Outbound:
    meta = request.META
    return Outbound(body, meta.get("HTTP_ANTHROPIC_VERSION", ""), meta.get("HTTP_ANTHROPIC_BETA", ""))


def _queue_wish(request: HttpRequest, chat: dict[str, Any], grant: KeyGrant) -> QueueWish | None:
    """The request's queue headers, but for `Prefer: respond-async`: a queued job answers at /v1/queue/{id}
    in OpenAI's shape, so a Messages request waits in line as its key allows instead, or is refused."""
    wish = queue_wish(request, chat, grant)
    if wish is None or not wish.asynchronous:
        return wish
    return QueueWish(timeout=wish.timeout) if wish.timeout is not None else None
