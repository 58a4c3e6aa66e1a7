"""/v1/batches: create a batch from an uploaded file, retrieve it, list them, cancel one.

The batch runs in the background (gateway.tasks, gateway.batch_runner), each
line through the same pipeline as a live request made with the key that
created it. Batches belong to the tenant, as files do: another tenant's is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router

from batches.models import Batch
from batches.objects import batch_object
from batches.selectors import MAX_LIST, batch_get, batches_list, file_get
from batches.services.batches import COMPLETION_WINDOWS, batch_cancel, batch_create
from gateway.background import enqueue
from gateway.batch_runner import ENDPOINTS
from gateway.errors import InvalidRequest, NotFound
from gateway.intake import grant_of, json_body
from gateway.routers.files import in_thread, json_response, limit_of, no_such_file, page
from gateway.routers.openapi import documented

router = Router(tags=["batches"])

METADATA_KEYS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 16, 64, 512

BATCH_REQUEST = {
    "type": "object",
    "required": ["input_file_id", "endpoint", "completion_window"],
    "properties": {
        "input_file_id": {"type": "string"},
        "endpoint": {"enum": list(ENDPOINTS)},
        "completion_window": {"enum": list(COMPLETION_WINDOWS)},
        "metadata": {
            "type": ["object", "null"],
            "maxProperties": METADATA_KEYS,
            "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_LENGTH},
        },
    },
}


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid type for '{name}': expected a string.", param=name, code="invalid_type")
    return value


def _one_of(body: dict[str, Any], name: str, allowed: Any) -> str:
    value = _string(body, name)
    if value not in allowed:
        choices = ", ".join(f"'{choice}'" for choice in allowed)
        raise InvalidRequest(
            f"Invalid value for '{name}': expected one of {choices}.", param=name, code="invalid_value"
        )
    return value


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    """OpenAI's metadata: at most 16 pairs of strings, keys up to 64 characters and values up to 512."""
    metadata = body.get("metadata")
    if metadata is None:
        return None
    valid = (
        isinstance(metadata, dict)
        and len(metadata) <= METADATA_KEYS
        and all(isinstance(key, str) and len(key) <= METADATA_KEY_LENGTH for key in metadata)
        and all(isinstance(value, str) and len(value) <= METADATA_VALUE_LENGTH for value in metadata.values())
        # Kept in a JSON column, which on Postgres takes no NUL: a database error where a 400 is right
        and not any("\x00" in text for pair in metadata.items() for text in pair)
    )
    if not valid:
        raise InvalidRequest(
            f"Invalid 'metadata': expected an object of at most {METADATA_KEYS} strings without NUL characters, "
            f"with keys of up to {METADATA_KEY_LENGTH} characters and values of up to {METADATA_VALUE_LENGTH}.",
            param="metadata",
            code="invalid_value",
        )
    return metadata


async def _tenant_batch(request: HttpRequest, batch_id: str) -> Batch:
    batch = await in_thread(batch_get, tenant_id=grant_of(request).tenant_id, batch_id=batch_id)
    if batch is None:
        raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


@router.post("/batches", summary="Create a batch", openapi_extra=documented(BATCH_REQUEST))
async def create_batch(request: HttpRequest) -> HttpResponse:
    body = json_body(request)
    input_file_id = _string(body, "input_file_id")
    endpoint = _one_of(body, "endpoint", ENDPOINTS)
    window = _one_of(body, "completion_window", COMPLETION_WINDOWS)
    metadata = _metadata(body)
    grant = grant_of(request)
    input_file = await in_thread(file_get, tenant_id=grant.tenant_id, file_id=input_file_id)
    if input_file is None:
        raise no_such_file(input_file_id, param="input_file_id")
    if input_file.purpose != "batch":
        raise InvalidRequest(
            f"The file {input_file_id} was not uploaded with purpose 'batch'.",
            param="input_file_id",
            code="invalid_value",
        )
    batch = await in_thread(
        batch_create,
        tenant_id=grant.tenant_id,
        api_key_id=grant.key_id,
        input_file=input_file,
        endpoint=endpoint,
        completion_window=window,
        metadata=metadata,
    )
    await in_thread(enqueue, "gateway.tasks.batches_start", batch.id, queue="batch")
    return json_response(batch_object(batch))


@router.get("/batches", summary="List batches", openapi_extra=documented())
async def list_batches(request: HttpRequest) -> HttpResponse:
    batches, has_more = await in_thread(
        batches_list,
        tenant_id=grant_of(request).tenant_id,
        after=request.GET.get("after") or None,
        limit=limit_of(request, default=20, most=MAX_LIST),
    )
    return json_response(page([batch_object(batch) for batch in batches], has_more))


@router.get("/batches/{batch_id}", summary="Retrieve a batch", openapi_extra=documented())
async def retrieve_batch(request: HttpRequest, batch_id: str) -> HttpResponse:
    return json_response(batch_object(await _tenant_batch(request, batch_id)))


@router.post("/batches/{batch_id}/cancel", summary="Cancel a batch", openapi_extra=documented())
async def cancel_batch(request: HttpRequest, batch_id: str) -> HttpResponse:
    batch = await _tenant_batch(request, batch_id)
    if batch.status not in (Batch.Status.VALIDATING, Batch.Status.IN_PROGRESS, Batch.Status.CANCELLING):
        raise InvalidRequest(
            f"Cannot cancel a batch with status '{batch.status}'.", param="batch_id", code="invalid_state"
        )
    batch = await in_thread(batch_cancel, batch=batch)
    # Its runner, if one is running, finishes the lines in flight and ends it; otherwise this chunk does.
    await in_thread(enqueue, "gateway.tasks.batches_run_chunk", batch.id, queue="batch")
    return json_response(batch_object(batch))
