"""POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API, served for any public model.

No auth callback: the views read Anthropic's key headers themselves, so that a
refusal has Anthropic's error shape (gateway.messages). Left out of
/v1/openapi.json, which describes the OpenAI surface; docs/messages.md describes these.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.messages import views
from gateway.sse import EventStream

router = Router(tags=["messages"], auth=None)


@router.post("/messages", summary="Create a message (Anthropic's Messages API)", include_in_schema=False)
async def create_message(request: HttpRequest) -> HttpResponse | EventStream:
    return await views.create_message(request)


@router.post(
    "/messages/count_tokens",
    summary="Count a message's input tokens (Anthropic's Messages API)",
    include_in_schema=False,
)
async def count_message_tokens(request: HttpRequest) -> HttpResponse:
    return await views.count_tokens(request)
