"""GET /v1/models and /v1/models/{model}: what the key may call."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.intake import find_model, grant_of
from gateway.routers.openapi import documented
from gateway.snapshot import store
from providers.facade import ModelInfo

router = Router(tags=["models"])


def _model_object(model: ModelInfo) -> dict[str, Any]:
    return {"id": model.public_id, "object": "model", "created": model.created, "owned_by": model.owned_by}


@router.get("/models", summary="List models", openapi_extra=documented())
async def list_models(request: HttpRequest) -> HttpResponse:
    grant = grant_of(request)
    models = (await store.get()).models
    data = [_model_object(model) for public_id, model in sorted(models.items()) if grant.may_use(public_id)]
    return HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


@router.get("/models/{path:model}", summary="Retrieve a model", openapi_extra=documented())
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    found = find_model(await store.get(), grant_of(request), model)
    return HttpResponse(orjson.dumps(_model_object(found)), content_type="application/json")
