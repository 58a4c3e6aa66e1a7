"""Health checks into the routing breakers: the glue between providers.probes and gateway.breakers.

The health check task (providers.tasks.deployment_health_probe) hands its
outcomes to `breakers_feed` (named by PORTICO_HEALTH_PROBE_SINK: providers sits
below the gateway and does not import it). Each outcome counts as one request's:

    ok                       a success: it closes a half-open breaker (the check was its probe)
    failed                   a failure, towards the error ratio and the failures in a row
    failed N times in a row  the breaker opens at once for the cooldown (PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN)

A breaker open and still cooling down takes no outcome: it would ignore it.
The check's latency is not fed: a model list's latency says nothing about the
latency of the calls the breakers watch.

The breakers are built for a server's event loop, which a Celery task does not
have: each feed runs one loop of its own with breakers of its own (the
process's cached ones hold a client of another loop). A first set is started
only to read which breakers are not closed and to take probe slots; a second,
never started, records the outcomes and flushes them to Redis before the feed
returns, and its transitions are written to the history at once.

Without Redis the breakers live in each server process (gateway.breakers.local).
There the embedded schedule runs the check on the server's own threads, so the
feed hands the outcomes to the server's event loop, where its requests read
those breakers, and feeds them the same way (`breakers_for_settings()`, whose
history the server runs). A process that serves no requests (a worker on a
broker other than Redis) has no breakers a request reads: its checks are
recorded and nothing is fed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from django.conf import settings

from gateway import invalidation
from gateway.breakers import BreakerRules, LocalBreakers, RedisBreakers, TransitionLog, breakers_for_settings
from providers.probes import DeploymentHealth

logger = logging.getLogger(__name__)

# Seconds to wait for the breakers to read their shared state; past it, they count every breaker closed.
WATCH_TIMEOUT = 2.0
_WATCH_POLL = 0.01
# The watcher's periodic flush, far beyond its life: stopping it must not meet a flush that is just waking
# (on Python 3.11, cancelling `asyncio.wait_for` as its inner wait completes can be lost, and stop() then waits).
IDLE_FLUSH = 3600.0
# Seconds each Redis command of a feed may take. The request path gives Redis a quarter second and counts a
# breaker closed past it; a check's task can wait, and a loaded Redis must not make it drop what it found.
REDIS_TIMEOUT = 5.0
# Seconds to wait for the server's loop to take a check's outcomes: they cost a lock each, but the loop may be busy.
LOCAL_FEED_TIMEOUT = 10.0


def breakers_feed(results: Sequence[DeploymentHealth]) -> None:
    """Feed the checks to the shared breakers; returns once Redis has them and the history has their changes.
    Without Redis, to this server process's own breakers, once they have them."""
    if not results:
        return
    if not settings.REDIS_URL:
        _feed_local(results)
        return
    history = TransitionLog()
    asyncio.run(_feed(results, history))
    history.flush()  # here, in the task's thread: the history's own thread was never started


def _feed_local(results: Sequence[DeploymentHealth]) -> None:
    loop = invalidation.serving_loop()
    breakers = breakers_for_settings()
    if loop is None or not isinstance(breakers, LocalBreakers):
        logger.debug("health checks recorded; no Redis and no server in this process, so no breakers to feed")
        return
    # On the server's loop, as every other outcome its breakers take; the check runs on a thread of its own.
    asyncio.run_coroutine_threadsafe(_feed_into(breakers, results), loop).result(timeout=LOCAL_FEED_TIMEOUT)


async def _feed_into(breakers: LocalBreakers, results: Sequence[DeploymentHealth]) -> None:
    """Each outcome to a breaker that takes it: a closed one, or a half-open one (or an open one past its
    cooldown) that grants it a probe, as the shared breakers are fed."""
    for result in results:
        if await breakers.acquire_probe(result.deployment_id):
            _record(breakers, result)


def _breakers(history: TransitionLog, *, success_flush: float = 0.5) -> RedisBreakers:
    return RedisBreakers(
        settings.REDIS_URL,
        prefix=settings.PORTICO_REDIS_PREFIX,
        rules=BreakerRules.from_settings(),
        history=history,
        socket_timeout=REDIS_TIMEOUT,
        success_flush=success_flush,
    )


async def _feed(results: Sequence[DeploymentHealth], history: TransitionLog) -> None:
    granted = await _taking_outcomes(results)
    # Never started, so no background flush runs: the outcomes go to Redis in the one flush below.
    breakers = _breakers(history)
    for result in results:
        if result.deployment_id in granted:
            _record(breakers, result)
    await breakers.flush()
    await breakers.stop()


async def _taking_outcomes(results: Sequence[DeploymentHealth]) -> set[int]:
    """The deployments whose breaker takes this check's outcome: closed ones, and half-open ones (or open ones
    past their cooldown) that grant it a probe. Breakers of their own, started to read which breakers are not
    closed; they record nothing, so their flush loop is idle when they stop."""
    watcher = _breakers(TransitionLog(), success_flush=IDLE_FLUSH)
    await watcher.start()
    try:
        deadline = time.monotonic() + WATCH_TIMEOUT
        # `watching` is a plain flag its watcher task sets once it has read every breaker: polled, bounded.
        while not watcher.watching and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_WATCH_POLL)
        return {result.deployment_id for result in results if await watcher.acquire_probe(result.deployment_id)}
    finally:
        await watcher.stop()


def _record(breakers: RedisBreakers | LocalBreakers, result: DeploymentHealth) -> None:
    if result.ok:
        breakers.record(result.deployment_id, result.name, ok=True)
        return
    reason = f"health check: {result.reason}"
    breakers.record(result.deployment_id, result.name, ok=False, reason=reason)
    if result.failures_in_a_row >= settings.PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN:
        breakers.cool_down(
            result.deployment_id,
            result.name,
            breakers.rules.cooldown,
            f"{result.failures_in_a_row} health checks failed in a row: {result.reason}",
        )
