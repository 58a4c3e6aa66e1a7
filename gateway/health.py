"""Probes for load balancers and Kubernetes: is this process alive, is it ready for traffic.

    GET /health/live    200 {"status": "ok"} whenever the process answers; touches nothing else
    GET /health/ready   200 when the database answers, Redis answers (if REDIS_URL is set) and the
                        snapshot of keys and routes has been loaded; otherwise 503, naming each check:
                        {"status": "unavailable", "checks": {"database": "ok", "redis": "error: ...", ...}}

Unauthenticated, and saying nothing a caller could use: a failing check gives
its exception's class (or that it timed out), the details go to the log. Each
check has CHECK_TIMEOUT seconds and they run at once, so a probe is answered
within about that, whatever hangs; a database check that hangs is not started
again until it returns, so probes cannot pile threads up behind it.

/v1/ keeps serving from its snapshot while the database is away, but this
probe says unready: send traffic by /health/live if that matters more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_safe
from redis.exceptions import RedisError

from gateway.snapshot import store

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 1.5
OK = "ok"
_NO_CACHE = {"Cache-Control": "no-store"}


class CheckFailed(Exception):
    pass


@require_safe
async def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"}, headers=_NO_CACHE)


@require_safe
async def ready(request: HttpRequest) -> JsonResponse:
    checks = await readiness()
    if all(result == OK for result in checks.values()):
        return JsonResponse({"status": "ok", "checks": checks}, headers=_NO_CACHE)
    return JsonResponse({"status": "unavailable", "checks": checks}, status=503, headers=_NO_CACHE)


async def readiness() -> dict[str, str]:
    """Each check's name and its result: "ok", or "error: " and why."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {"database": check_database}
    if settings.REDIS_URL:
        checks["redis"] = check_redis
    checks["snapshot"] = check_snapshot
    results = await asyncio.gather(*(_run(name, check) for name, check in checks.items()))
    return dict(zip(checks, results, strict=True))


async def _run(name: str, check: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check()
    except TimeoutError:
        logger.warning("readiness: %s did not answer within %g s", name, CHECK_TIMEOUT)
        return f"error: no answer within {CHECK_TIMEOUT:g} s"
    except CheckFailed as exc:
        return f"error: {exc}"
    except (DatabaseError, RedisError, OSError) as exc:
        logger.warning("readiness: %s failed: %s", name, exc)
        return f"error: {exc.__class__.__name__}"
    return OK


_database_check = threading.Lock()


def _select_one() -> None:
    if not _database_check.acquire(blocking=False):
        raise CheckFailed("the previous check has not returned yet")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # This thread serves no request: nothing else would hand the connection back to the pool.
        connection.close()
        _database_check.release()


async def check_database() -> None:
    await sync_to_async(_select_one, thread_sensitive=False)()


async def check_redis() -> None:
    client = aioredis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_snapshot() -> None:
    if store.current is None:
        raise CheckFailed("not loaded yet")


urlpatterns = [path("live", live), path("ready", ready)]
