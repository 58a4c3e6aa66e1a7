"""POST /v1/embeddings, /v1/moderations and /v1/images/generations: one JSON answer each."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import default_route, find_route, grant_of, json_body, new_call, require_operation
from gateway.relay import serve
from gateway.snapshot import store
from gateway.sse import EventStream
from gateway.validation import validate_embedding_request, validate_image_request, validate_moderation_request

router = Router(tags=["embeddings"])


@router.post("/embeddings", summary="Create embeddings")
async def create_embeddings(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_embedding_request(body)
    snapshot = await store.get()
    route = find_route(snapshot, grant_of(request), body["model"])
    require_operation(route, "embeddings")
    body.pop("stream", None)
    return await serve(new_call(request, route, "embeddings", body), snapshot.billing)


@router.post("/moderations", summary="Classify text (and images) for moderation")
async def create_moderation(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_moderation_request(body)
    snapshot = await store.get()
    grant = grant_of(request)
    model = body.get("model")
    route = find_route(snapshot, grant, model) if model else default_route(snapshot, grant, "moderations")
    require_operation(route, "moderations")
    body.pop("stream", None)
    return await serve(new_call(request, route, "moderations", body), snapshot.billing)


@router.post("/images/generations", summary="Create images")
async def create_image(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_image_request(body)
    snapshot = await store.get()
    grant = grant_of(request)
    model = body.get("model")
    route = find_route(snapshot, grant, model) if model else default_route(snapshot, grant, "images")
    require_operation(route, "images")
    body.pop("stream", None)  # streamed image generation is not relayed; the whole answer is
    return await serve(new_call(request, route, "images", body), snapshot.billing)
