"""GET /v1/models and /v1/models/{model}: what the key may call."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import find_route, grant_of
from gateway.routers.openapi import documented
from gateway.snapshot import store
from providers.facade import RouteInfo

router = Router(tags=["models"])


def _model_object(route: RouteInfo) -> dict[str, Any]:
    return {"id": route.public_id, "object": "model", "created": route.created, "owned_by": route.owned_by}


@router.get("/models", summary="List models", openapi_extra=documented())
async def list_models(request: HttpRequest) -> HttpResponse:
    grant = grant_of(request)
    routes = (await store.get()).routes
    data = [_model_object(route) for model, route in sorted(routes.items()) if grant.may_use(model)]
    return HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


@router.get("/models/{path:model}", summary="Retrieve a model", openapi_extra=documented())
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    route = find_route(await store.get(), grant_of(request), model)
    return HttpResponse(orjson.dumps(_model_object(route)), content_type="application/json")
