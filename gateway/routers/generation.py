"""POST /v1/chat/completions and the legacy POST /v1/completions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import (
    check_chat_capabilities,
    find_route,
    grant_of,
    json_body,
    new_call,
    require,
    require_operation,
)
from gateway.relay import serve
from gateway.snapshot import store
from gateway.sse import EventStream
from gateway.validation import validate_chat_request, validate_completion_request

router = Router(tags=["generation"])


@router.post("/chat/completions", summary="Create a chat completion")
async def create_chat_completion(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_chat_request(body)
    snapshot = await store.get()
    route = find_route(snapshot, grant_of(request), body["model"])
    check_chat_capabilities(route, body)
    return await serve(new_call(request, route, "chat", body), snapshot.billing)


@router.post("/completions", summary="Create a completion (legacy)")
async def create_completion(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_completion_request(body)
    snapshot = await store.get()
    route = find_route(snapshot, grant_of(request), body["model"])
    require_operation(route, "completions")
    if body.get("stream"):
        require(route, "streaming", "streaming")
    return await serve(new_call(request, route, "completions", body), snapshot.billing)
