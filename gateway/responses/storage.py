"""Responses kept for `GET /v1/responses/{id}`: written off the request path, read by the tenant's id.

`store_later` never waits: the row is inserted on a worker thread while the
answer goes out, as the ledger's rows are. Until the insert commits the
response is held in this process's memory, so the client's next request (a
retrieve right after the create) finds it here even before the database does;
another process finds it once the insert has committed, a few milliseconds
later. A failed insert is logged and the response is not kept: OpenAI's
clients treat a stored response as a convenience, never as the answer itself.
The embedded default loses responses still waiting when the process stops.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import DatabaseError, IntegrityError

from batches.selectors import askable
from batches.threads import in_thread
from gateway.models import StoredResponse

logger = logging.getLogger(__name__)

# Responses on their way to the database, by (tenant id, response id).
_pending: dict[tuple[int, str], dict[str, Any]] = {}
_writes: set[asyncio.Task[None]] = set()  # held so the loop does not drop a write half-way


def stored_response_create(*, tenant_id: int, key_id: int | None, response: dict[str, Any]) -> None:
    StoredResponse.objects.create(
        response_id=response["id"],
        tenant_id=tenant_id,
        key_id=key_id,
        model=str(response.get("model") or ""),
        body=orjson.dumps(response).decode(),
        created_at=datetime.fromtimestamp(int(response.get("created_at") or 0), tz=UTC),
    )


def stored_response_get(*, tenant_id: int, response_id: str) -> dict[str, Any] | None:
    if not askable(response_id):
        return None
    row = StoredResponse.objects.filter(tenant_id=tenant_id, response_id=response_id).only("body").first()
    return None if row is None else orjson.loads(row.body)


def stored_response_delete(*, tenant_id: int, response_id: str) -> bool:
    if not askable(response_id):
        return False
    deleted, _ = StoredResponse.objects.filter(tenant_id=tenant_id, response_id=response_id).delete()
    return deleted > 0


def store_later(*, tenant_id: int, key_id: int | None, response: dict[str, Any]) -> None:
    """Keep `response` for its tenant; returns at once (must be called on the event loop)."""
    key = (tenant_id, str(response["id"]))
    _pending[key] = response
    task = asyncio.get_running_loop().create_task(_write(key, key_id, response))
    _writes.add(task)
    task.add_done_callback(_writes.discard)


async def _write(key: tuple[int, str], key_id: int | None, response: dict[str, Any]) -> None:
    try:
        await in_thread(stored_response_create, tenant_id=key[0], key_id=key_id, response=response)
    except IntegrityError:
        logger.warning("response %s is stored already for its tenant; the new one is not kept", key[1])
    except DatabaseError:
        logger.exception("response %s could not be stored", key[1])
    finally:
        _pending.pop(key, None)


async def stored_response(*, tenant_id: int, response_id: str) -> dict[str, Any] | None:
    """The tenant's stored response, or None: another tenant's reads as one that does not exist."""
    held = _pending.get((tenant_id, response_id))
    if held is not None:
        return held
    return await in_thread(stored_response_get, tenant_id=tenant_id, response_id=response_id)


async def forget_response(*, tenant_id: int, response_id: str) -> bool:
    """Delete the tenant's stored response; False if it has none by that id."""
    if (tenant_id, response_id) in _pending:
        await asyncio.gather(*_writes)  # let it land, so the delete finds it
    return await in_thread(stored_response_delete, tenant_id=tenant_id, response_id=response_id)
