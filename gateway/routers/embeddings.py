"""POST /v1/embeddings, /v1/moderations and /v1/images/generations: one JSON answer each, or images' events.

Embeddings and moderations refuse `stream` as they validate. Images are
streamed once the model is known, if every deployment's provider kind streams
them (the openai kind: OpenAI's `image_generation.*` events, relayed as sent);
otherwise `stream: true` gets OpenAI's 400. Moderations and
images may leave `model` out, and then get the first such model the key may use.
Embeddings go through the response cache, which routes them as usual unless a
cache policy covers the tenant and model (gateway.response_cache).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import json_call
from gateway.response_cache import serve_cached
from gateway.routers.openapi import EMBEDDING_REQUEST, IMAGE_REQUEST, MODERATION_REQUEST, documented
from gateway.routing import serve
from gateway.sse import EventStream
from gateway.validation import (
    validate_embedding_request,
    validate_image_fields,
    validate_moderation_request,
)

router = Router(tags=["embeddings"])


@router.post("/embeddings", summary="Create embeddings", openapi_extra=documented(EMBEDDING_REQUEST))
async def create_embeddings(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve_cached(request, *await json_call(request, "embeddings", validate_embedding_request))


@router.post(
    "/moderations",
    summary="Classify text (and images) for moderation",
    openapi_extra=documented(MODERATION_REQUEST),
)
async def create_moderation(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve(*await json_call(request, "moderations", validate_moderation_request))


@router.post("/images/generations", summary="Create images", openapi_extra=documented(IMAGE_REQUEST))
async def create_image(request: HttpRequest) -> HttpResponse | EventStream:
    return await serve(*await json_call(request, "images", validate_image_fields))
