"""Reading what a client sent: the JSON body, its extensions, the public model and what it must do, the call."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest

from gateway.accounting import Call
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.extensions import AUTO, Extensions, read_extensions
from gateway.fastpath import new_request_id
from gateway.queueing.wish import queue_wish
from gateway.snapshot import Snapshot, store
from gateway.validation import refuse_unstreamed, validate_output_cap
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


def require(model: ModelInfo, capability: str, what: str) -> None:
    if capability not in model.capabilities:
        raise InvalidRequest(
            f"The model `{model.public_id}` does not support {what}.", param="model", code="unsupported_capability"
        )


def kind_serves(route: RouteInfo, operation: Operation) -> bool:
    """Whether the deployment's provider kind speaks the operation (legacy completions may be bridged to chat)."""
    operations = route.provider.adapter.operations
    return operation in operations or (operation == "completions" and "chat" in operations)


def require_operation(model: ModelInfo, operation: Operation) -> None:
    """The model must promise the operation, and some deployment's provider kind must speak it (or bridge it)."""
    capability, what = NEEDS[operation]
    require(model, capability, what)
    if not any(kind_serves(route, operation) for route in model.routes):
        raise InvalidRequest(
            f"The model `{model.public_id}` does not support {what}.", param="model", code="unsupported_capability"
        )


def check_chat_capabilities(model: ModelInfo, body: dict[str, Any]) -> None:
    require_operation(model, "chat")
    if body.get("stream"):
        require(model, "streaming", "streaming")
    if body.get("tools") or body.get("functions"):
        require(model, "tools", "tools")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        require(model, "json_mode", "JSON mode (response_format)")
    if any(
        isinstance(message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") == "image_url" for part in message["content"])
        for message in body["messages"]
    ):
        require(model, "vision", "image inputs")


def check(model: ModelInfo, operation: Operation, body: dict[str, Any]) -> None:
    """What the request needs of its model: the operation, streaming, tools, vision, JSON mode, its output cap."""
    if operation == "chat":
        check_chat_capabilities(model, body)
    else:
        require_operation(model, operation)
        if body.get("stream"):
            require(model, "streaming", "streaming")
            # Images stream only where every deployment's kind does; a fallback that cannot is passed over.
            refuse_unstreamed(model, operation, True)
    if operation in ("chat", "completions"):
        # Before admission: what a request reserves against its limits follows from its output cap.
        validate_output_cap(body, model.max_output_tokens)


def capable(model: ModelInfo, operation: Operation, body: dict[str, Any]) -> bool:
    """Whether `model` can serve the request (a fallback that cannot is passed over)."""
    try:
        check(model, operation, body)
    except InvalidRequest:
        return False
    return True


def auto_models(snapshot: Snapshot, grant: KeyGrant, ext: Extensions, operation: Operation) -> list[ModelInfo]:
    """`model: "auto"`: the models the key may use of the family asked for, with the capabilities asked for."""
    capability, _what = NEEDS[operation]
    needed = ext.capabilities | {capability}
    return [
        model
        for public_id, model in sorted(snapshot.models.items())
        if grant.may_use(public_id)
        and needed <= model.capabilities
        and (not ext.model_family or model.model_family == ext.model_family)
    ]


def _chosen(
    snapshot: Snapshot, grant: KeyGrant, body: dict[str, Any], ext: Extensions, operation: Operation
) -> tuple[ModelInfo, Extensions]:
    public_id = body.get("model")
    if public_id != AUTO or AUTO in snapshot.models:
        if ext.model_family or ext.capabilities:
            raise InvalidRequest(
                '`model_family` and `capabilities` choose the model: send them with `model: "auto"`.',
                param="model_family" if ext.model_family else "capabilities",
                code="invalid_value",
            )
        if public_id is None:
            return default_model(snapshot, grant, operation), ext
        return find_model(snapshot, grant, public_id), ext
    models = [model for model in auto_models(snapshot, grant, ext, operation) if capable(model, operation, body)]
    if not models:
        raise InvalidRequest(
            "No model the API key may use has the `model_family` and `capabilities` asked for.",
            param="model_family" if ext.model_family else "capabilities",
            code="model_not_found",
        )
    # The first is served; the others are its fallbacks, unless the request names its own.
    fallbacks = ext.models if ext.models is not None else tuple(model.public_id for model in models[1:])
    return models[0], dataclasses.replace(ext, models=fallbacks)


async def json_call(
    request: HttpRequest, operation: Operation, validate: Callable[[dict[str, Any]], None]
) -> tuple[Call, Snapshot, Extensions]:
    """Read, validate and check a JSON request: the call, the snapshot it is served under, its extensions."""
    body = json_body(request)
    ext = read_extensions(body, request.META, max_timeout=settings.PORTICO_MAX_REQUEST_TIMEOUT)
    validate(body)
    snapshot = await store.get()
    model, ext = _chosen(snapshot, grant_of(request), body, ext, operation)
    check(model, operation, body)
    if body.get("model") == AUTO:
        body["model"] = model.public_id
    call = new_call(request, model, operation, body)
    call.queue = queue_wish(request, body, call.grant)
    if ext.request_id:
        call.client_request_id = ext.request_id
    return call, snapshot, ext


def new_call(request: HttpRequest, model: ModelInfo, operation: Operation, body: dict[str, Any]) -> Call:
    return Call(
        request_id=getattr(request, "portico_request_id", None) or new_request_id(),
        client_request_id=getattr(request, "client_request_id", ""),
        grant=grant_of(request),
        model=model,
        operation=operation,
        body=body,
    )
