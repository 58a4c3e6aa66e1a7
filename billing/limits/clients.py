"""Connections to Redis: those `RedisLimiter` can send its scripts over (the hand-written one, or redis-py's), and
redis-py's client of one Redis or of a Redis Cluster, which every other user of Redis gets from `redis_client`.

    single Redis (the default)   RespClient (resp.py): one pipelined socket, the cheapest per call
    Redis Cluster                RedisPyClient around redis.asyncio.cluster.RedisCluster, which knows
                                 which node holds which slot and follows MOVED and ASK replies

The limiter needs three things of a connection: `call` (send a command, await
its reply; if the caller is cancelled meanwhile, hand the reply to `orphan`
when it comes, so that the limiter can give back what an acquire reserved for
a client that left), `send_soon` (write a command once the current step of the
event loop is done, its reply as a future, or None when it cannot) and `aclose`.
Both kinds raise redis-py's error classes for reply errors (`ResponseError`,
`NoScriptError`), so the limiter tells an outage from a bad request the same
way on either.

Why the cluster uses redis-py rather than teaching resp.py slot routing: the
routing (slot table, MOVED/ASK, failover, refreshing the table) is most of what
makes a cluster client hard to get right, redis-py maintains it, and a cluster
is chosen for capacity, where the extra CPU per call (bench/redis_clients.py)
buys more than it costs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Literal, Protocol, cast, overload

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from billing.limits.resp import RespClient


class LimiterClient(Protocol):
    async def call(self, *args: Any, orphan: Callable[[Any], None] | None = None) -> Any: ...

    def send_soon(self, *args: Any) -> asyncio.Future[Any] | None: ...

    async def aclose(self) -> None: ...


class RedisPyClient:
    """redis-py's asyncio client (a single Redis or a cluster) as a `LimiterClient`."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._client = client

    async def call(self, *args: Any, orphan: Callable[[Any], None] | None = None) -> Any:
        if args[0] == "SCRIPT":
            # The cluster client routes a command by its name, given as one word: SCRIPT LOAD goes to every
            # primary, as each must know the script before a key of its slots is used with it.
            args = (f"SCRIPT {args[1]}", *args[2:])
        if orphan is None:
            return await self._client.execute_command(*args)
        # redis-py drops a command whose caller is cancelled at whatever point it had reached: run it in a
        # task of its own, so a reply that comes is handed over all the same.
        task = asyncio.ensure_future(self._client.execute_command(*args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(functools.partial(_hand_over, orphan))
            raise

    def send_soon(self, *args: Any) -> asyncio.Future[Any] | None:
        # redis-py has no way to write a command and hand back the reply later: the limiter awaits `call` instead.
        return None

    async def aclose(self) -> None:
        await self._client.aclose()


def _hand_over(orphan: Callable[[Any], None], task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is None:
        orphan(task.result())


def limiter_client(url: str, *, timeout: float, cluster: bool) -> LimiterClient:
    """The connection for the Redis (or, with `cluster`, the Redis Cluster seed node) at `url`."""
    if cluster:
        return RedisPyClient(redis_client(url, timeout=timeout, cluster=True))
    return RespClient(url, timeout=timeout)


@overload
def redis_client(url: str, *, timeout: float, cluster: bool, blocking: Literal[False] = False) -> Redis: ...


@overload
def redis_client(url: str, *, timeout: float, cluster: bool, blocking: Literal[True]) -> redis.Redis: ...


def redis_client(url: str, *, timeout: float, cluster: bool, blocking: bool = False) -> Redis | redis.Redis:
    """redis-py's client of the Redis at `url`, or with `cluster` of the Redis Cluster it is a node of: asyncio's,
    or with `blocking` the one for a thread (an operator's page, a summary). `timeout` bounds the connect and each
    reply.

    Typed as the single-node client: redis-py types the two apart, though they share every command Portico sends
    (a cluster client routes each by its keys, and SCRIPT LOAD and SCAN to every primary).
    """
    if blocking:
        threaded = redis.RedisCluster if cluster else redis.Redis
        return cast(redis.Redis, threaded.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout))
    kind = RedisCluster if cluster else Redis
    return cast(Redis, kind.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout))
