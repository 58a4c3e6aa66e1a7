"""The OpenAI-compatible surface: a Ninja API mounted at /v1/, every view async and ORM-free."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from gateway.auth import api_key_auth
from gateway.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    PorticoError,
    error_response,
)
from gateway.relay import chat
from gateway.snapshot import store
from gateway.sse import EventStream
from gateway.validation import validate_chat_request
from providers.facade import RouteInfo
from tenants.facade import KeyGrant

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Portico OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    auth=api_key_auth,
    docs_url="/docs",
)


@api.exception_handler(PorticoError)
def _portico_error(request: HttpRequest, exc: PorticoError) -> HttpResponse:
    return error_response(exc)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(PorticoError(str(exc), status=exc.status_code, type="invalid_request_error"))


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return error_response(InvalidRequest(str(first.get("msg", "Invalid request.")), param=param))


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(AuthenticationFailed("Authentication failed."))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # Only reachable through Django's own handler (PORTICO_FAST_PATH=false); the fast path answers 413 itself.
    return error_response(BodyTooLarge.over(settings.PORTICO_MAX_BODY_BYTES))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The last resort: whatever escaped is logged with its traceback, and the client gets no detail.
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(InternalError("The server had an error while processing your request."))


def json_body(request: HttpRequest) -> dict[str, Any]:
    content_type = request.META.get("CONTENT_TYPE", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest(
            f"Invalid Content-Type header ({content_type or 'none'}), expected application/json.",
            code="invalid_content_type",
        )
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


async def _route(grant: KeyGrant, model: str) -> RouteInfo:
    route = (await store.get()).routes.get(model)
    if route is None or not grant.may_use(model):
        raise ModelNotFound(model)
    return route


def _model_object(route: RouteInfo) -> dict[str, Any]:
    return {"id": route.public_id, "object": "model", "created": route.created, "owned_by": route.owned_by}


def _require(route: RouteInfo, capability: str, what: str) -> None:
    if capability not in route.capabilities:
        raise InvalidRequest(
            f"The model `{route.public_id}` does not support {what}.", param="model", code="unsupported_capability"
        )


def _check_capabilities(route: RouteInfo, body: dict[str, Any]) -> None:
    _require(route, "chat", "chat completions")
    if body.get("stream"):
        _require(route, "streaming", "streaming")
    if body.get("tools") or body.get("functions"):
        _require(route, "tools", "tools")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        _require(route, "json_mode", "JSON mode (response_format)")
    if any(
        isinstance(message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") == "image_url" for part in message["content"])
        for message in body["messages"]
    ):
        _require(route, "vision", "image inputs")


@api.get("/models", summary="List models")
async def list_models(request: HttpRequest) -> HttpResponse:
    grant: KeyGrant = request.auth  # type: ignore[attr-defined]
    routes = (await store.get()).routes
    data = [_model_object(route) for model, route in sorted(routes.items()) if grant.may_use(model)]
    return HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")


@api.get("/models/{path:model}", summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    route = await _route(request.auth, model)  # type: ignore[attr-defined]
    return HttpResponse(orjson.dumps(_model_object(route)), content_type="application/json")


@api.post("/chat/completions", summary="Create a chat completion")
async def create_chat_completion(request: HttpRequest) -> HttpResponse | EventStream:
    body = json_body(request)
    validate_chat_request(body)
    route = await _route(request.auth, body["model"])  # type: ignore[attr-defined]
    _check_capabilities(route, body)
    return await chat(route, body)
