from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from batches.models import Batch, File
from batches.services.batches import batch_create
from batches.services.files import file_create, file_store
from tenants.models import ApiKey

CHAT = "/v1/chat/completions"


def request_line(custom_id: str, content: str = "hi", *, url: str = CHAT, model: str = "m") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(lines: Iterable[dict[str, Any] | bytes]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines)


def make_file(api_key: ApiKey, content: bytes, *, purpose: str = "batch") -> File:
    stored = file_store(tenant_id=api_key.tenant_id, chunks=[content], max_bytes=len(content) + 1)
    return file_create(
        tenant_id=api_key.tenant_id,
        api_key_id=api_key.pk,
        purpose=purpose,
        filename="input.jsonl",
        stored=stored,
        expires_at=None,
    )


def make_batch(api_key: ApiKey, content: bytes, *, endpoint: str = CHAT) -> Batch:
    return batch_create(
        tenant_id=api_key.tenant_id,
        api_key_id=api_key.pk,
        input_file=make_file(api_key, content),
        endpoint=endpoint,
        completion_window="24h",
        metadata={"purpose": "test"},
    )
