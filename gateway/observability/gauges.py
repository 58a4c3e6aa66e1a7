"""Gauges read from the process's state rather than counted per request.

`sample` runs with the hand-off's drain every tick and before a scrape: the
snapshot's age, the ledger spool's backlog, the requests waiting in line, and
what the limiter's spares (billing/limits/spares.py) added to their counters.
In multiprocess mode each worker writes its own value and /metrics shows the
worst age and the summed backlog and depth of the live workers.

Breaker states are read at scrape time (`BreakerCollector`) by the process
that answers the scrape. With Redis every process mirrors the same shared
breakers; without it (one process, the embedded default) that process's are
the only ones.

    portico_breaker_state{deployment,model}   0 closed, 1 half-open (probing), 2 open
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.observability.metrics import Metrics

CLOSED, HALF_OPEN, OPEN = 0, 1, 2


def sample(metrics: Metrics) -> None:
    # Imported here: gateway.accounting sets up the hand-off, which samples through this module.
    from gateway.accounting import accounts
    from gateway.queueing.lines import lines
    from gateway.snapshot import store

    snapshot = store.current
    if snapshot is not None:
        metrics.snapshot_age.set(max(0.0, time.time() - snapshot.loaded_at))
    spool = accounts.spool
    metrics.spool_pending.set(spool.pending + len(spool.held))
    # Read from another thread: a copy of the values, taken at once under the GIL.
    metrics.queue_depth.set(sum(list(lines._depth.values())))
    spares = getattr(accounts.limiter, "spares", None)  # only a RedisLimiter keeps spares
    if spares is not None:
        metrics.count_spares(spares)


class BreakerCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gateway.breakers import breakers_for_settings
        from gateway.snapshot import store

        family = GaugeMetricFamily(
            "portico_breaker_state",
            "Each deployment's circuit breaker: 0 closed, 1 half-open (probing), 2 open.",
            labels=("deployment", "model"),
        )
        snapshot = store.current
        if snapshot is not None:
            breakers = breakers_for_settings()
            for model in snapshot.models.values():
                for route in model.routes:
                    if breakers.is_open(route.id):
                        state = OPEN
                    elif breakers.allow(route.id):
                        state = CLOSED
                    else:
                        state = HALF_OPEN
                    family.add_metric((route.name, route.public_id), state)
        yield family
