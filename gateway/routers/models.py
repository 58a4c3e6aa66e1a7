"""GET /v1/models and /v1/models/{model}: what the key may call, and what Portico knows of it.

A model object starts with OpenAI's four fields (id, object, created, owned_by).
Unless the key's tenant turned it off (`Tenant.describe_models`), Portico adds
its own after them (docs/models.md); the SDKs keep fields they do not know, so a
client that ignores them reads OpenAI's object. Everything comes from the
snapshot: no query per request.

`providers` names every provider with a deployment of the model, in routing
order, not only the first: a weighted, least-busy or failing-over model is
answered by any of them, and each name is one a client may pin with the
`provider` extension. It is left out when PORTICO_HIDE_PROVIDER keeps provider
names from clients, as the routing headers leave them out.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router

from billing.facade import BillingSnapshot, PriceInfo
from billing.metering import usd
from gateway.intake import find_model, grant_of
from gateway.routers.openapi import documented
from gateway.snapshot import store
from providers.facade import ModelInfo

router = Router(tags=["models"])


def model_object(model: ModelInfo, *, described: bool, billing: BillingSnapshot, now: float) -> dict[str, Any]:
    """A model as /v1/models shows it: OpenAI's fields, then Portico's description when `described`."""
    shown: dict[str, Any] = {
        "id": model.public_id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
    }
    if not described:
        return shown
    if not settings.PORTICO_HIDE_PROVIDER:
        shown["providers"] = list(dict.fromkeys(route.provider.name for route in model.routes))
    shown["capabilities"] = sorted(model.capabilities)
    shown["context_window"] = model.context_window
    shown["max_output_tokens"] = model.max_output_tokens
    shown["pricing"] = pricing(model.public_id, billing=billing, now=now)
    shown["model_family"] = model.model_family or None
    return shown


def pricing(public_id: str, *, billing: BillingSnapshot, now: float) -> dict[str, str] | None:
    """What a tenant pays for the model now, USD per million tokens as exact decimals; None if it has no price.

    Strings, as Portico writes every amount for programs (`x-portico-cost`): the exact decimal stored, where a
    JSON number would reach most clients as a binary float.
    """
    schedule = billing.prices.get(public_id)
    price = schedule.at(now) if schedule is not None else None
    return _priced(price) if price is not None else None


@functools.lru_cache(maxsize=4096)
def _priced(price: PriceInfo) -> dict[str, str]:
    # Formatting three Decimals is about a third of a described model's cost, and the same few prices come back
    # on every listing: cached per price. The dict is shared, so it is only ever serialised, never changed.
    return {
        "currency": "USD",
        "input_per_million": usd(price.input),
        "output_per_million": usd(price.output),
        "cached_input_per_million": usd(price.cached_input),
    }


@router.get("/models", summary="List models", openapi_extra=documented())
async def list_models(request: HttpRequest) -> HttpResponse:
    grant = grant_of(request)
    snapshot = await store.get()
    now = time.time()
    data = [
        model_object(model, described=grant.describe_models, billing=snapshot.billing, now=now)
        for public_id, model in sorted(snapshot.models.items())
        if grant.may_use(public_id)
    ]
    return HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


@router.get("/models/{path:model}", summary="Retrieve a model", openapi_extra=documented())
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    grant = grant_of(request)
    snapshot = await store.get()
    found = find_model(snapshot, grant, model)
    shown = model_object(found, described=grant.describe_models, billing=snapshot.billing, now=time.time())
    return HttpResponse(orjson.dumps(shown), content_type="application/json")
