"""POST /v1/chat/completions and the legacy POST /v1/completions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import json_call
from gateway.response_cache import serve_cached
from gateway.routers.openapi import CHAT_REQUEST, COMPLETION_REQUEST, documented
from gateway.sse import EventStream
from gateway.validation import validate_chat_request, validate_completion_request

router = Router(tags=["generation"])


@router.post("/chat/completions", summary="Create a chat completion", openapi_extra=documented(CHAT_REQUEST))
async def create_chat_completion(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve_cached(request, *await json_call(request, "chat", validate_chat_request))


@router.post("/completions", summary="Create a completion (legacy)", openapi_extra=documented(COMPLETION_REQUEST))
async def create_completion(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve_cached(request, *await json_call(request, "completions", validate_completion_request))
