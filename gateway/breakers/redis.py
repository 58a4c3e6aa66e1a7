"""Breakers shared by every Portico process through Redis.

The request path never waits on Redis to decide. Each process keeps a mirror
of the breakers that are not closed (deployment id -> open until), which
`is_open` reads; the mirror follows the transitions published on the
breakers' channel and is read whole from Redis every `poll` seconds, in case
a message was lost. `record` and `cool_down` only append to a list; a task
sends the list to Redis, at once when it holds a failure or a trip (within
tens of milliseconds), otherwise every `success_flush` seconds. Only a probe
of a half-open breaker awaits Redis (one script call, granted atomically
across processes), and a refusal is remembered for `DENIED_FOR` seconds so a
busy process does not ask again and again.

When Redis does not answer, the breakers fail open: the mirror is emptied
(every deployment counts as closed), probes are granted, outcomes are dropped,
and the outage is logged at most every 30 s. A request never fails for it.

The state and the reset run in an operator's thread (the admin), with plain
redis-py calls.

On a Redis Cluster (`cluster=True`, `url` one of its nodes) the calls go
through redis-py's cluster clients, which find each key's node. A breaker's
keys share the hash tag `{<deployment id>}`, so each script's keys lie in one
slot; the set of known breakers is a key of its own. The transitions are
plain PUBLISH messages, which a cluster passes to every node, so the watcher
subscribes on the node `url` names.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from billing.limits.clients import redis_client
from gateway.breakers.rules import (
    CLOSED,
    OPEN,
    RECENT_ERRORS,
    RESET_REASON,
    BreakerRules,
    BreakerState,
    LatencyWatch,
    RecentError,
    Transition,
    moment,
)
from gateway.breakers.scripts import OPEN as OPEN_SCRIPT
from gateway.breakers.scripts import PROBE, RECORD, RESET

if TYPE_CHECKING:
    from gateway.breakers.history import TransitionLog

logger = logging.getLogger(__name__)

ALARM_INTERVAL = 30.0  # seconds between two log lines about the same outage
RETRY = 1.0  # seconds before the watcher reconnects
DENIED_FOR = 0.25  # seconds a refused probe is refused again without asking Redis
PENDING_MAX = 100_000  # outcomes held for the next flush; more are dropped

Outcome = tuple[int, str, bool, str]  # deployment id, name, ok, reason
Trip = tuple[int, str, float, str]  # deployment id, name, open until, reason


class RedisBreakers:
    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        rules: BreakerRules,
        clock: Callable[[], float] = time.time,
        history: TransitionLog | None = None,
        socket_timeout: float = 0.25,
        poll: float = 1.0,
        success_flush: float = 0.5,
        cluster: bool | None = None,
    ) -> None:
        """`clock` gives Unix seconds; the scripts take the time from it, so every process must share it.

        `cluster`: `url` is a node of a Redis Cluster (default PORTICO_REDIS_CLUSTER).
        """
        if cluster is None:
            from django.conf import settings

            cluster = bool(settings.PORTICO_REDIS_CLUSTER)
        self.rules = rules
        self._url = url
        self._cluster = cluster
        self._prefix = prefix
        self._channel = f"{prefix}:breakers"
        self._known = f"{prefix}:breakers:known"
        self._clock = clock
        self._history = history
        self._poll_every = poll
        self._success_flush = success_flush
        # Untyped, as `aioredis.from_url` always was: redis-py types every command's reply as sync or async alike.
        self._client: Any = redis_client(url, timeout=socket_timeout, cluster=cluster)
        self._scripts = {name: self._client.register_script(source) for name, source in _SOURCES.items()}
        self._latency = LatencyWatch(rules.latency_multiple, rules.latency_floor)
        self._open: dict[int, float] = {}  # deployments not closed -> until when open (0: half-open)
        self._denied: dict[int, float] = {}  # deployment -> until when a refused probe stands
        self._outcomes: list[Outcome] = []
        self._trips: list[Trip] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._alarmed_at = -math.inf
        self.watching = False  # subscribed to the transitions, and the mirror read afresh

    # --- the request path -----------------------------------------------------------------------------------

    def is_open(self, route_id: int) -> bool:
        until = self._open.get(route_id)
        return until is not None and until > self._clock()

    def allow(self, route_id: int) -> bool:
        """Closed. A half-open breaker's probe needs Redis: `await acquire_probe()` asks for one."""
        return route_id not in self._open

    async def acquire_probe(self, route_id: int) -> bool:
        """The async `allow`: True at once when closed; when half-open, True if Redis grants a probe."""
        until = self._open.get(route_id)
        if until is None:
            return True
        now = self._clock()
        if until > now or self._denied.get(route_id, 0.0) > now:
            return False
        try:
            granted, moves = await self._scripts["probe"](
                keys=self._keys(route_id, 2), args=[*self._head(route_id, ""), self.rules.half_open_probes]
            )
        except (RedisError, OSError) as exc:
            self._trouble(exc)
            return True
        self._took(route_id, moves)
        if not granted:
            self._denied[route_id] = now + DENIED_FOR
        return bool(granted)

    def record(
        self,
        route_id: int,
        name: str,
        *,
        ok: bool,
        latency: float | None = None,
        ttfb: float | None = None,
        reason: str = "",
    ) -> None:
        if len(self._outcomes) < PENDING_MAX:
            self._outcomes.append((route_id, name, ok, reason))
        degraded = self._latency.degraded(route_id, latency, ttfb) if ok else ""
        if degraded:
            self.cool_down(route_id, name, self.rules.cooldown, degraded)
        elif not ok and self._wake is not None:
            self._wake.set()

    def cool_down(self, route_id: int, name: str, seconds: float, reason: str) -> None:
        until = self._clock() + seconds
        # This process keeps away at once; the others once the flush has reached Redis.
        self._open[route_id] = max(until, self._open.get(route_id) or 0.0)
        self._trips.append((route_id, name, until, reason))
        if self._wake is not None:
            self._wake.set()

    # --- background ---------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Send what was recorded since the last flush; dropped (and logged) if Redis does not answer."""
        outcomes, self._outcomes = self._outcomes, []
        trips, self._trips = self._trips, []
        if not outcomes and not trips:
            return
        batches: dict[int, tuple[list[str], list[int], list[str]]] = {}  # id -> [name], runs, reasons
        for route_id, name, ok, reason in outcomes:
            names, runs, reasons = batches.setdefault(route_id, ([""], [0], []))
            names[0] = name or names[0]
            if ok:
                runs[-1] += 1
            else:
                runs.append(0)
                reasons.append(reason)
        try:
            await self._client.sadd(self._known, *{route_id for route_id, *_ in outcomes + trips})
            for route_id, (names, runs, reasons) in batches.items():
                args = [*self._head(route_id, names[0]), *self._window_rules(), len(reasons), *runs, *reasons]
                self._took(route_id, await self._scripts["record"](keys=self._keys(route_id, 3), args=args))
            for route_id, name, until, reason in trips:
                args = [*self._head(route_id, name), until, reason]
                self._took(route_id, await self._scripts["open"](keys=self._keys(route_id, 2), args=args))
        except (RedisError, OSError) as exc:
            self._trouble(exc)

    async def start(self) -> None:
        if self._tasks:
            return
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(_supervised("breaker flush", self._flush_forever)),
            loop.create_task(_supervised("breaker watch", self._watch_forever)),
        ]
        if self._history is not None:
            self._history.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.flush()
        await self._client.aclose()
        if self._history is not None:
            await asyncio.to_thread(self._history.stop)

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            # Not asyncio.wait_for: on Python 3.11 a cancel that arrives as the wait completes is lost, and
            # stop() would wait on this task for ever.
            try:
                async with asyncio.timeout(self._success_flush):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def _watch_forever(self) -> None:
        """Follow published transitions, and read every breaker afresh every `poll` seconds."""
        while True:
            client = aioredis.from_url(self._url, socket_timeout=self._poll_every + 5, socket_connect_timeout=1)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._poll()  # anything missed while unsubscribed
                    self.watching = True
                    due = time.monotonic() + self._poll_every
                    while True:
                        wait = max(0.0, due - time.monotonic())
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                        if message is not None:
                            change = orjson.loads(message["data"])
                            self._mirror(int(change["id"]), change["state"], float(change["open_until"]))
                        if time.monotonic() >= due:
                            await self._poll()
                            due = time.monotonic() + self._poll_every
            except (RedisError, OSError) as exc:
                self._trouble(exc)
                await asyncio.sleep(RETRY)
            finally:
                await client.aclose()

    async def _poll(self) -> None:
        ids = [int(raw) for raw in await self._client.smembers(self._known)]
        async with self._client.pipeline(transaction=False) as pipe:
            for route_id in ids:
                pipe.hmget(self._keys(route_id, 1)[0], "state", "open_until")
            rows = await pipe.execute() if ids else []
        mirror: dict[int, float] = {}
        for route_id, (state, until) in zip(ids, rows, strict=True):
            if state is not None and state != CLOSED.encode():
                mirror[route_id] = float(until or 0) if state == OPEN.encode() else 0.0
        self._open = mirror

    # --- operators (their own thread) ----------------------------------------------------------------------

    def reset(self, route_id: int) -> None:
        """Close it for every process. Raises RedisError when Redis does not answer: the operator must know."""
        client = self._operator_client()
        try:
            reply = client.register_script(RESET)(
                keys=self._keys(route_id, 2), args=[*self._head(route_id, ""), RESET_REASON]
            )
        finally:
            client.close()
        self._open.pop(route_id, None)
        if self._history is not None:
            self._history.write([change for change, _ in _moves(route_id, reply)])

    def state(self, route_id: int) -> BreakerState:
        state_key, _, errors_key = self._keys(route_id, 3)
        client = self._operator_client()
        try:
            # redis-py types its sync and async replies as one union; this client is the sync one.
            stored = cast(dict[bytes, bytes], client.hgetall(state_key))
            recent = cast(list[bytes], client.lrange(errors_key, 0, RECENT_ERRORS - 1))
            fields = {key.decode(): value.decode() for key, value in stored.items()}
            errors = [orjson.loads(raw) for raw in recent]
        except RedisError:
            logger.warning("could not read breaker %s from Redis", route_id)
            return BreakerState(route_id, CLOSED, None, None, "unknown: Redis does not answer", ())
        finally:
            client.close()
        state = fields.get("state", CLOSED)
        return BreakerState(
            route_id=route_id,
            state=state,
            since=moment(float(fields["since"])) if "since" in fields else None,
            until=moment(float(fields["open_until"])) if state == OPEN else None,
            reason=fields.get("reason", ""),
            last_errors=tuple(RecentError(moment(error["at"]), error["reason"]) for error in errors),
        )

    # --- helpers ------------------------------------------------------------------------------------------

    def _operator_client(self) -> redis.Redis:
        return redis_client(self._url, timeout=2, cluster=self._cluster, blocking=True)

    def _keys(self, route_id: int, count: int) -> list[str]:
        stem = f"{self._prefix}:breaker:{{{route_id}}}"
        return [f"{stem}:state", f"{stem}:window", f"{stem}:errors"][:count]

    def _head(self, route_id: int, name: str) -> list[Any]:
        return [repr(self._clock()), route_id, name, self._channel, self.rules.cooldown]

    def _window_rules(self) -> list[Any]:
        rules = self.rules
        return [f"{rules.window:g}", rules.error_ratio, rules.min_requests, rules.consecutive_failures, RECENT_ERRORS]

    def _took(self, route_id: int, reply: Any) -> None:
        """Mirror what a script did at once (not waiting for its message), and keep its transitions."""
        moves = _moves(route_id, reply)
        if moves:
            last, until = moves[-1]
            self._mirror(route_id, last.to_state, until)
        if self._history is not None:
            for change, _ in moves:
                self._history.add(change)

    def _mirror(self, route_id: int, state: str, until: float) -> None:
        if state == CLOSED:
            self._open.pop(route_id, None)
        else:
            self._open[route_id] = until if state == OPEN else 0.0
        self._denied.pop(route_id, None)

    def _trouble(self, exc: Exception) -> None:
        self.watching = False
        self._open = {}  # fail open: a deployment nobody can judge counts as closed
        self._denied = {}
        now = time.monotonic()
        if now - self._alarmed_at >= ALARM_INTERVAL:
            self._alarmed_at = now
            logger.error("circuit breakers cannot use Redis (%s); every deployment counts as closed meanwhile", exc)


_SOURCES = {"record": RECORD, "open": OPEN_SCRIPT, "probe": PROBE, "reset": RESET}


def _moves(route_id: int, reply: Any) -> list[tuple[Transition, float]]:
    """The transitions a script reports, each with the time until which it left the breaker open."""
    moves = orjson.loads(reply)
    if not isinstance(moves, list):  # Lua's cjson writes an empty table as {}
        return []
    return [
        (
            Transition(route_id, move["name"], move["from"], move["to"], move["reason"], float(move["at"])),
            float(move["open_until"]),
        )
        for move in moves
    ]


async def _supervised(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a background loop for the life of the process, restarting it if it ever fails."""
    while True:
        try:
            await loop()
        except Exception:
            # Deliberately broad: a loop that died silently would leave every breaker unseen for good.
            logger.exception("background %s stopped unexpectedly; restarting it", name)
        await asyncio.sleep(RETRY)
