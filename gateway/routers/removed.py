"""Endpoints OpenAI has removed: answered exactly as OpenAI answers them now, as unknown URLs."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway.errors import NotFound

router = Router(tags=["removed"])

# POST /v1/edits was shut down in January 2024 (use chat completions); /v1/engines went with the engine-based API.
REMOVED = ("/edits", "/engines")


async def _removed(request: HttpRequest) -> HttpResponse:
    raise NotFound(f"Invalid URL ({request.method} {request.path})")


for _path in REMOVED:
    router.add_api_operation(_path, ["GET", "POST"], _removed, auth=None, include_in_schema=False)
