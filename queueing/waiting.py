"""Requests waiting in line now, per tenant: counted by the gateway's lines, read by the admin's queue summary.

The in-line waits (gateway.queueing.lines) are not rows: they live in the
processes that serve them. Each process tallies its own, per tenant (`tally`,
kept by gateway.queueing.lines; a queued job's run waiting for capacity is a job,
counted as one, not here). With Redis, each process also publishes its tally as
a hash of its own, renewed every second while it has waiters:

    {prefix}:queue:waiting:{process}     hash: tenant id -> requests of that process waiting in line

The hash expires TTL seconds after its process last renewed it, so a process
that dies takes its waiters out of the count on its own. The summary adds up
every process's hash; without Redis (the embedded default: one process serves
and answers the admin) it reads this process's tally.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import cast

from django.conf import settings
from redis.exceptions import RedisError

from billing.limits.clients import redis_client

logger = logging.getLogger(__name__)

RENEW_EVERY = 1.0  # seconds between two writes of a process's hash while it has waiters
TTL = 5.0  # seconds a hash outlives its process's last write


def waiting_key(prefix: str, process: str) -> str:
    return f"{prefix}:queue:waiting:{process}"


class Tally:
    """This process's requests waiting in line, per tenant; read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}

    def change(self, tenant_id: int, by: int) -> None:
        with self._lock:
            count = self._counts.get(tenant_id, 0) + by
            if count > 0:
                self._counts[tenant_id] = count
            else:
                self._counts.pop(tenant_id, None)

    def counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


tally = Tally()


def waiting_in_line() -> dict[int, int]:
    """Tenant id -> requests waiting in line now, in every process (Redis) or in this one (without Redis).

    Redis out of reach: this process's own, logged; the summary is advisory and must not fail the page.
    """
    if not settings.REDIS_URL:
        return tally.counts()
    try:
        return _published()
    except (RedisError, OSError):
        logger.warning("Redis does not answer: the queue summary counts this process's waiters only", exc_info=True)
        return tally.counts()


def _published() -> dict[int, int]:
    client = redis_client(settings.REDIS_URL, timeout=2, cluster=settings.PORTICO_REDIS_CLUSTER, blocking=True)
    totals: Counter[int] = Counter()
    with client:
        for name in client.scan_iter(match=waiting_key(settings.PORTICO_REDIS_PREFIX, "*"), count=200):
            held = cast(dict[bytes, bytes], client.hgetall(name))
            for tenant, count in held.items():
                totals[int(tenant)] += int(count)
    return {tenant: count for tenant, count in totals.items() if count > 0}
