"""Database work from async code (the OpenAI surface, the batch runner): in a worker thread, never the loop's.

A thread of the event loop's executor serves no request, so nothing else would
hand its connection back to the pool (gateway/database.py): each call does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


async def in_thread(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def closing() -> T:
        try:
            return work(*args, **kwargs)
        finally:
            connections.close_all()

    return await sync_to_async(closing, thread_sensitive=False)()
