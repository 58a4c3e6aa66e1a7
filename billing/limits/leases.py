"""Keeping a process's slots in flight held while their calls run, so that a process that dies frees them soon.

A slot in flight (a `max_concurrent` limit, a deployment's `max_in_flight`) is
a member of its scope's set, held until the end of its lease. A call gives its
slot back when it ends (`settle`); a process that dies mid-call (SIGKILL, a
lost machine, a worker killed during a queued job's upstream call) never does,
and its slots are free only once their leases end. So the lease is short
(PORTICO_IN_FLIGHT_LEASE, 30 s), and while a call runs its process renews it:

    every lease / 3, one renewal of every slot the process holds     `renew(tickets)` of each limiter
    a process that dies renews nothing: its slots are free within one lease

One mechanism for every holder, a server's interactive requests as much as a
worker's background ones, because it costs no request a round trip: holding a
slot is a dictionary entry (about a microsecond from acquire to settle), and
the renewal is one round trip per process every lease / 3, however many calls
are in flight. A heartbeat per call would cost a
round trip per call and interval; keeping the long lease for interactive calls
would leave a crashed server's tenants blocked for it.

What a short lease asks in return: a process whose event loop cannot run its
renewal for a whole lease (blocked for 20 s and more), or that cannot reach
Redis for that long, loses the slots of its calls in flight, and the caps may
be passed by those calls until they end. A renewal never brings a slot back:
one that was settled, or whose lease ran out, stays free.

Tickets are held weakly: a ticket that its call dropped without settling (a
bug) is no longer renewed, so its slot is free within a lease, as a dead
process's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable

from billing.limits.verdicts import Ticket

Renew = Callable[[list[Ticket]], Awaitable[None]]


class LeaseKeeper:
    """The tickets with slots in flight that one limiter issued in this process, renewed while they are held."""

    def __init__(self, renew: Renew, *, lease: float) -> None:
        self._renew = renew
        self.interval = lease / 3
        self._held: dict[str, weakref.ref[Ticket]] = {}  # by request id
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(1 for ref in self._held.values() if ref() is not None)

    def hold(self, ticket: Ticket) -> None:
        """Renew the ticket's slots in flight until it is let go (called in the event loop, as acquire is)."""
        if not ticket.concurrency_scopes:
            return
        self._held[ticket.request_id] = weakref.ref(ticket)
        task = self._task
        loop = asyncio.get_running_loop()
        # A keeper of another loop (a test's, a restarted runtime's) cannot run here: a new one starts.
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._keep(), name="portico-in-flight-leases")

    def let_go(self, ticket: Ticket) -> None:
        """The ticket is being settled: its slots are no longer renewed."""
        ref = self._held.get(ticket.request_id)
        if ref is not None and ref() is ticket:
            del self._held[ticket.request_id]

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self) -> None:
        # Ends once nothing is held at a renewal; the next ticket held starts it again.
        while self._held:
            await asyncio.sleep(self.interval)
            tickets = []
            for request_id, ref in list(self._held.items()):
                ticket = ref()
                if ticket is None:
                    del self._held[request_id]  # dropped without a settle: left to lapse
                else:
                    tickets.append(ticket)
            if tickets:
                await self._renew(tickets)
