"""Lines of requests waiting for capacity, and the turns they take (whose turn it is: gateway.queueing.orders).

    if await take_turn(line, flow=tenant_id, deadline=..., attempt=try_once): ...   # took the capacity in turn

`attempt` tries to take the capacity once: it returns None when it did, else
the seconds after which another try makes sense (the limiter's Retry-After;
POLL for a cap whose slots free up whenever some call ends). Only a line's
head tries, when its dispatcher (one task per line that has waiters) says so:

    a waiter joined, or the head left (served, its deadline, its client gone)   at once
    a call of this process finished (`Lines.freed`, from accounting.finish)      at once
    the head's last refusal said when (at most MAX_PAUSE later)                  then
    the line is shared by every process (orders.SharedOrder)                     every POLL seconds: the head
                                                                                 may be another process's

So a freed slot goes to the head and to nobody behind it, and a burst of
waiters costs one try per wake-up, not one each. A waiter whose deadline
comes leaves its line (take_turn returns False): its caller tries once more,
out of turn, and that refusal is what the client gets.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.asyncio import Redis

from billing.limits.clients import redis_client
from gateway.queueing.orders import LocalOrder, Order, SharedOrder
from gateway.queueing.published import Publisher
from queueing.waiting import Tally, tally, waiting_key

POLL = 0.05  # seconds between two looks at a shared line, and between two tries on a cap freed by any call
MAX_PAUSE = 1.0  # the longest a head waits between two tries, whatever Retry-After says
# Waiters are named for their process, so a shared line tells every process's apart.
_PROCESS = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
_members = itertools.count(1)

Attempt = Callable[[], Awaitable[float | None]]


@dataclass(eq=False, slots=True)
class Waiter:
    member: str
    flow: int  # the tenant
    job: bool = False  # a queued job's run: counted in the tenant's depth, but as a job, not a request in line
    turn: asyncio.Event = field(default_factory=asyncio.Event)


class Line:
    """One resource's waiters in this process (and, shared, the order of every process's)."""

    def __init__(self, name: str, order: Order, lines: Lines) -> None:
        self.name = name
        self.order = order
        self.waiters: dict[str, Waiter] = {}
        self.trying: Waiter | None = None  # the head, told to try and not yet back
        self.resume_at = 0.0  # loop time before which the head is not told to try again
        self._lines = lines
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def join(self, flow: int, *, job: bool = False) -> Waiter:
        # The waiter is in `waiters` before the first await: a line with a waiter is never dropped.
        waiter = Waiter(f"{_PROCESS}:{next(_members)}", flow, job)
        self.waiters[waiter.member] = waiter
        self._lines.counted(waiter, 1, shared=self.order.shared)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=f"portico-queue {self.name}")
        try:
            await self.order.join(waiter.member, flow)
        except BaseException:
            self.leave(waiter)  # a client gone while the line was being joined
            raise
        self._wake.set()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """Out of the line unserved (its deadline, its client gone); the next head is told at once."""
        if self._forget(waiter):
            self._lines.later(self.order.leave(waiter.member, served=False))

    async def served(self, waiter: Waiter) -> None:
        if not self._forget(waiter):
            return
        self.resume_at = 0.0  # there may be room for the next one too
        try:
            await self.order.leave(waiter.member, served=True)
        except asyncio.CancelledError:
            self._lines.later(self.order.leave(waiter.member, served=True))
            raise

    def refused(self, waiter: Waiter, pause: float) -> None:
        if self.trying is waiter:
            self.trying = None
        self.resume_at = asyncio.get_running_loop().time() + min(max(pause, POLL), MAX_PAUSE)
        self._wake.set()

    def nudge(self) -> None:
        """Capacity may have been freed: the head tries again now, whatever its last refusal said."""
        self.resume_at = 0.0
        self._wake.set()

    def _forget(self, waiter: Waiter) -> bool:
        if self.waiters.pop(waiter.member, None) is None:
            return False
        self._lines.counted(waiter, -1, shared=self.order.shared)
        if self.trying is waiter:
            self.trying = None
        self._wake.set()
        return True

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiters:
                self._wake.clear()
                if self.order.shared or (self.trying is None and loop.time() >= self.resume_at):
                    head = await self.order.head(list(self.waiters))
                    waiter = self.waiters.get(head) if head is not None else None
                    if waiter is not None and self.trying is None and loop.time() >= self.resume_at:
                        self.trying = waiter
                        waiter.turn.set()
                try:
                    async with asyncio.timeout(self._sleep(loop.time())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._task = None
            self._lines.drop(self)

    def _sleep(self, now: float) -> float | None:
        if self.order.shared:
            return POLL  # the head may be another process's; and this process's leases want renewing
        if self.trying is None and self.resume_at > now:
            return self.resume_at - now
        return None  # until a waiter reports, joins or leaves, or a call frees capacity


class Lines:
    """This process's lines, by name; dropped once empty.

    Its requests waiting in line (not jobs' runs) are counted per tenant in `waiting`, which the admin reads
    (queueing.waiting): in this process, and, with Redis, published there for every process's admin.
    """

    def __init__(self, waiting: Tally = tally) -> None:
        self._lines: dict[str, Line] = {}
        self._depth: dict[int, int] = {}  # waiters per tenant, in every line of this process
        self._waiting = waiting
        self._publisher: Publisher | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._redis: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def line(self, name: str, *, shared: bool) -> Line:
        self._same_loop()
        found = self._lines.get(name)
        if found is None:
            order: Order = LocalOrder()
            if shared and settings.REDIS_URL:
                order = SharedOrder(
                    self._client(),
                    prefix=settings.PORTICO_REDIS_PREFIX,
                    line=name,
                    cluster=settings.PORTICO_REDIS_CLUSTER,
                )
            found = self._lines[name] = Line(name, order, self)
        return found

    def crowded(self, name: str) -> bool:
        """Whether requests of this process wait in the line: a new one joins them rather than going first."""
        self._same_loop()
        line = self._lines.get(name)
        return line is not None and bool(line.waiters)

    def depth(self, flow: int) -> int:
        self._same_loop()
        return self._depth.get(flow, 0)

    def freed(self) -> None:
        """A call of this process ended (its limits and deployment slot are being given back)."""
        if not self._lines:
            return  # nobody waits: most calls stop here
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # finished outside the serving loop: its waiters (if any) will try again on their timers
        if loop is self._loop:
            for line in self._lines.values():
                line.nudge()

    def counted(self, waiter: Waiter, change: int, *, shared: bool) -> None:
        flow = waiter.flow
        depth = self._depth.get(flow, 0) + change
        if depth > 0:
            self._depth[flow] = depth
        else:
            self._depth.pop(flow, None)
        if waiter.job:
            return
        self._waiting.change(flow, change)
        if shared:  # in Redis, as the line is: every process's admin sees this process's waiters
            if self._publisher is None:
                key = waiting_key(settings.PORTICO_REDIS_PREFIX, _PROCESS)
                self._publisher = Publisher(self._waiting, self._client, key)
            self._publisher.changed()

    def drop(self, line: Line) -> None:
        if not line.waiters and self._lines.get(line.name) is line:
            del self._lines[line.name]

    def later(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Let go of the Redis connection of shared lines (the process, or a test's event loop, is ending)."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.aclose()
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = redis_client(settings.REDIS_URL, timeout=0.25, cluster=settings.PORTICO_REDIS_CLUSTER)
        return self._redis

    def _same_loop(self) -> None:
        # A process serves from one event loop; a new one (tests, a restarted runtime) starts from nothing, as the
        # old loop's tasks and Redis connections cannot be used from it.
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._lines, self._depth, self._background, self._redis = {}, {}, set(), None
            self._publisher = None
            self._waiting.clear()  # the old loop's waiters are gone with it


async def take_turn(line: Line, *, flow: int, deadline: float, attempt: Attempt, job: bool = False) -> bool:
    """Wait in `line` until `attempt` takes the capacity in turn (True), or until `deadline` (loop time).

    `job`: the waiter is a queued job's run, which the admin counts as a job rather than a request in line.
    """
    waiter = await line.join(flow, job=job)
    served = False
    loop = asyncio.get_running_loop()
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    await waiter.turn.wait()
            except TimeoutError:
                break
            waiter.turn.clear()
            pause = await attempt()
            if pause is None:
                served = True
                await line.served(waiter)
                return True
            line.refused(waiter, pause)
        return False
    finally:
        if not served:
            line.leave(waiter)


lines = Lines()
