"""Reading what a client sent: the JSON body, the model's route, what the route can do, the call to account for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpRequest

from billing.facade import BillingSnapshot
from gateway.accounting import Call
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.fastpath import new_request_id
from gateway.snapshot import Snapshot, store
from gateway.validation import validate_output_cap
from providers.adapters.base import Operation
from providers.facade import ModelInfo, RouteInfo
from tenants.facade import KeyGrant

# What each operation needs of a route, and how a refusal names it.
NEEDS: dict[Operation, tuple[str, str]] = {
    "chat": ("chat", "chat completions"),
    "completions": ("chat", "completions"),
    "embeddings": ("embeddings", "embeddings"),
    "moderations": ("moderation", "moderations"),
    "images": ("images", "image generation"),
    "transcriptions": ("transcription", "audio transcription"),
}


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


def grant_of(request: HttpRequest) -> KeyGrant:
    return request.auth  # type: ignore[attr-defined]


def find_model(snapshot: Snapshot, grant: KeyGrant, model: str) -> ModelInfo:
    """The public model a key names; one it may not use reads exactly as one that does not exist."""
    found = snapshot.models.get(model)
    if found is None or not grant.may_use(model):
        raise ModelNotFound(model)
    return found


def default_model(snapshot: Snapshot, grant: KeyGrant, operation: Operation) -> ModelInfo:
    """For endpoints where `model` is optional (moderations, images): the first such model the key may use."""
    capability, what = NEEDS[operation]
    for public_id, model in sorted(snapshot.models.items()):
        if capability in model.capabilities and grant.may_use(public_id):
            return model
    raise InvalidRequest(f"No model for {what} is available to this API key; name one in `model`.", param="model")


def find_route(snapshot: Snapshot, grant: KeyGrant, model: str) -> RouteInfo:
    """The deployment a call is served from: the model's first, until routing chooses among them."""
    return find_model(snapshot, grant, model).routes[0]


def require(route: RouteInfo, capability: str, what: str) -> None:
    if capability not in route.capabilities:
        raise InvalidRequest(
            f"The model `{route.public_id}` does not support {what}.", param="model", code="unsupported_capability"
        )


def require_operation(route: RouteInfo, operation: Operation) -> None:
    """The route must be flagged for the operation, and its provider kind must speak it (or bridge it)."""
    capability, what = NEEDS[operation]
    require(route, capability, what)
    adapter = route.provider.adapter
    bridged = operation == "completions" and "chat" in adapter.operations
    if operation not in adapter.operations and not bridged:
        raise InvalidRequest(
            f"The model `{route.public_id}` does not support {what}.", param="model", code="unsupported_capability"
        )


def check_chat_capabilities(route: RouteInfo, body: dict[str, Any]) -> None:
    require_operation(route, "chat")
    if body.get("stream"):
        require(route, "streaming", "streaming")
    if body.get("tools") or body.get("functions"):
        require(route, "tools", "tools")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        require(route, "json_mode", "JSON mode (response_format)")
    if any(
        isinstance(message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") == "image_url" for part in message["content"])
        for message in body["messages"]
    ):
        require(route, "vision", "image inputs")


def _check(route: RouteInfo, operation: Operation, body: dict[str, Any]) -> None:
    if operation == "chat":
        check_chat_capabilities(route, body)
    else:
        require_operation(route, operation)
        if body.get("stream"):
            require(route, "streaming", "streaming")
    if operation in ("chat", "completions"):
        # Before admission: what a request reserves against its limits follows from its output cap.
        validate_output_cap(body, route.max_output_tokens)


async def json_call(
    request: HttpRequest, operation: Operation, validate: Callable[[dict[str, Any]], None]
) -> tuple[Call, BillingSnapshot]:
    """Read, validate and route a JSON request: the call to serve, and the billing view it is served under."""
    body = json_body(request)
    validate(body)
    snapshot = await store.get()
    grant = grant_of(request)
    public_id = body.get("model")
    model = (
        find_model(snapshot, grant, public_id) if public_id is not None else default_model(snapshot, grant, operation)
    )
    route = model.routes[0]
    _check(route, operation, body)
    return new_call(request, route, operation, body), snapshot.billing


def new_call(request: HttpRequest, route: RouteInfo, operation: Operation, body: dict[str, Any]) -> Call:
    return Call(
        request_id=getattr(request, "portico_request_id", None) or new_request_id(),
        client_request_id=getattr(request, "client_request_id", ""),
        grant=grant_of(request),
        route=route,
        operation=operation,
        body=body,
    )
