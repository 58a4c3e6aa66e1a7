"""POST /v1/responses, and GET and DELETE /v1/responses/{id} for the responses a tenant stored."""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.errors import UNREACHABLE, DatabaseUnavailable, NotFound
from gateway.intake import grant_of
from gateway.responses.serving import create_response
from gateway.responses.storage import forget_response, stored_response
from gateway.sse import EventStream

router = Router(tags=["responses"])


def _missing(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


@router.post("/responses", summary="Create a model response")
async def create(request: HttpRequest) -> HttpResponse | EventStream:
    return await create_response(request)


@router.get("/responses/{response_id}", summary="Retrieve a stored model response")
async def retrieve(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        response = await stored_response(tenant_id=grant_of(request).tenant_id, response_id=response_id)
    except UNREACHABLE:
        raise DatabaseUnavailable() from None
    if response is None:
        raise _missing(response_id)
    return HttpResponse(orjson.dumps(response), content_type="application/json")


@router.delete("/responses/{response_id}", summary="Delete a stored model response")
async def delete(request: HttpRequest, response_id: str) -> HttpResponse:
    try:
        deleted = await forget_response(tenant_id=grant_of(request).tenant_id, response_id=response_id)
    except UNREACHABLE:
        raise DatabaseUnavailable() from None
    if not deleted:
        raise _missing(response_id)
    body = {"id": response_id, "object": "response.deleted", "deleted": True}
    return HttpResponse(orjson.dumps(body), content_type="application/json")
