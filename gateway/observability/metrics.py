"""Portico's Prometheus metrics, and how one recorded call updates them.

    portico_requests_total{model,provider,status_class,error_class}      counter, one per /v1/ answer
    portico_request_latency_seconds{model,provider}                      histogram, arrival to the call's end
    portico_time_to_first_token_seconds{model,provider}                  histogram, streams
    portico_overhead_seconds                                             histogram, Portico's own time (clock.py)
    portico_prompt_tokens_total / portico_completion_tokens_total{model,provider}
    portico_cost_usd_total{model,provider}                               what tenants are charged
    portico_limiter_refusals_total{kind}                                 rpm, tpm, concurrency, budget, unavailable
    portico_snapshot_age_seconds, portico_ledger_spool_pending_rows, portico_queue_depth   gauges (gauges.py)
    portico_breaker_state{deployment,model}                              at scrape time (gauges.py)

With PORTICO_METRICS_TENANT_LABELS the per-call metrics and refusals also carry
`tenant` (the slug): a label per tenant multiplies every series, so it is opt-in.

Updating a labelled child means a dict lookup in prometheus_client and, in
multiprocess mode, a lock and an mmap write per value: the children of each
label set are looked up once and kept (`_Tally`), and the updates run in the
hand-off's drain (handoff.py), not in the request. Calls are tallied there in
plain numbers and added to the metrics once per pass (`flush`): a few writes
per label set and pass, not one per value and call.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Portico's own time is a fraction of a millisecond when all is well: the buckets start well below one.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# A cache of label sets past this size starts again rather than grow without bound.
_TALLIES_MAX = 10_000

# The limiter's refusals (billing.metering.Refused) as operators name them.
REFUSAL_KINDS = {
    "requests": "rpm",
    "tokens": "tpm",
    "concurrency": "concurrency",
    "budget": "budget",
    "unavailable": "unavailable",
    "failed": "failed",
}


class _Histogram:
    """Observations of one histogram child since the last flush: a sum and a count per bucket."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        # prometheus_client keeps a child's buckets uncumulated, one value per upper bound (+Inf last), and
        # exposes no way to add several observations at once: the flush adds to them directly.
        self.bounds: list[float] = child._upper_bounds
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        if not any(self.counts):
            return
        child = self.child
        child._sum.inc(self.total)
        for index, count in enumerate(self.counts):
            if count:
                child._buckets[index].inc(count)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0


class _Tally:
    """One label set's children, resolved once, and what its calls added since the last flush."""

    __slots__ = (
        "completion",
        "completion_child",
        "cost",
        "cost_child",
        "first_token",
        "latency",
        "prompt",
        "prompt_child",
        "requests",
        "requests_child",
    )

    def __init__(self, metrics: Metrics, labels: tuple[str, ...], call_labels: tuple[str, ...]) -> None:
        self.requests_child = metrics.requests.labels(*labels)
        self.latency = _Histogram(metrics.latency.labels(*call_labels))
        self.first_token = _Histogram(metrics.first_token.labels(*call_labels))
        self.prompt_child = metrics.prompt_tokens.labels(*call_labels)
        self.completion_child = metrics.completion_tokens.labels(*call_labels)
        self.cost_child = metrics.cost.labels(*call_labels)
        self.requests = self.prompt = self.completion = 0
        self.cost = 0.0

    def flush(self) -> None:
        if self.requests:
            self.requests_child.inc(self.requests)
            self.latency.flush()
            self.first_token.flush()
        if self.prompt:
            self.prompt_child.inc(self.prompt)
        if self.completion:
            self.completion_child.inc(self.completion)
        if self.cost:
            self.cost_child.inc(self.cost)
        self.requests = self.prompt = self.completion = 0
        self.cost = 0.0


class Metrics:
    """Every metric of a process, in `registry` (multiprocess mode collects them from their files instead)."""

    def __init__(self, registry: CollectorRegistry, *, tenant_labels: bool) -> None:
        self.registry = registry
        self.tenant_labels = tenant_labels
        tenant = ("tenant",) if tenant_labels else ()
        per_call = ("model", "provider", *tenant)
        self.requests = Counter(
            "portico_requests",
            "Answers to /v1/ requests, by model, provider, status class and Portico's error class.",
            ("model", "provider", "status_class", "error_class", *tenant),
            registry=registry,
        )
        self.latency = Histogram(
            "portico_request_latency_seconds",
            "Seconds from a call's arrival to its end (a stream's last byte).",
            per_call,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "portico_time_to_first_token_seconds",
            "Seconds from a streamed call's arrival to its first token.",
            per_call,
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "portico_overhead_seconds",
            "Seconds Portico itself spent on a request, upstream and queue waits left out (x-portico-overhead-ms).",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "portico_prompt_tokens", "Prompt tokens of served calls.", per_call, registry=registry
        )
        self.completion_tokens = Counter(
            "portico_completion_tokens", "Completion tokens of served calls.", per_call, registry=registry
        )
        self.cost = Counter("portico_cost_usd", "What calls cost their tenants, in USD.", per_call, registry=registry)
        self.refusals = Counter(
            "portico_limiter_refusals",
            "Calls refused by a tenant's or key's limits: rpm, tpm, concurrency, budget (or the limiter unavailable).",
            ("kind", *tenant),
            registry=registry,
        )
        self.spares_taken = Counter(
            "portico_limiter_spares_taken",
            "Limited calls admitted from a reservation kept ready for their key, without a Redis round trip.",
            registry=registry,
        )
        self.spares_given_back = Counter(
            "portico_limiter_spares_given_back",
            "Reservations kept ready that no call took, given back to Redis.",
            registry=registry,
        )
        self._spares_seen: tuple[object, int, int] = (None, 0, 0)  # the limiter's spares, and their totals then
        self.snapshot_age = Gauge(
            "portico_snapshot_age_seconds",
            "Seconds since the oldest worker's snapshot of keys, models and prices was loaded.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.spool_pending = Gauge(
            "portico_ledger_spool_pending_rows",
            "Ledger rows spooled or held in memory, not yet handed to the database.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "portico_queue_depth",
            "Requests waiting in line for capacity (docs/queueing.md).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._tallies: dict[tuple[str, ...], _Tally] = {}
        self._overhead = _Histogram(self.overhead)
        self._refusals: dict[tuple[str, ...], Any] = {}

    def _tally(self, model: str, provider: str, status: int, error: str, tenant: str) -> _Tally:
        key = (model, provider, _STATUS_CLASS.get(status // 100, "other"), error, tenant)
        found = self._tallies.get(key)
        if found is None:
            if len(self._tallies) >= _TALLIES_MAX:
                self.flush()
                self._tallies.clear()
            labels = key if self.tenant_labels else key[:4]
            call_labels = (model, provider, tenant) if self.tenant_labels else (model, provider)
            found = self._tallies[key] = _Tally(self, labels, call_labels)
        return found

    def record_call(self, row: dict[str, Any], tenant: str, overhead: float | None) -> None:
        """A call as its ledger row tells it (billing.ledger.LedgerEntry.row); counted at the next flush."""
        tally = self._tally(row["model"], row["provider"], row["status"], row["error_type"], tenant)
        tally.requests += 1
        tally.latency.observe(row["latency_ms"] / 1000)
        if row["first_token_ms"] is not None:
            tally.first_token.observe(row["first_token_ms"] / 1000)
        tally.prompt += row["prompt_tokens"]
        tally.completion += row["completion_tokens"]
        tally.cost += float(row["cost"])  # a metric's float; the ledger keeps the exact Decimal
        if overhead is not None:
            self._overhead.observe(overhead)

    def record_answer(self, status: int, overhead: float | None) -> None:
        """An answer that no call was made for (no key, an unknown model or URL, a malformed body)."""
        tally = self._tally("", "", status, "", "")
        tally.requests += 1
        if overhead is not None:
            self._overhead.observe(overhead)

    def record_refusal(self, refused: str, tenant: str) -> None:
        kind = REFUSAL_KINDS.get(refused, refused)
        key = (kind, tenant) if self.tenant_labels else (kind,)
        child = self._refusals.get(key)
        if child is None:
            child = self._refusals[key] = self.refusals.labels(*key)
        child.inc()

    def count_spares(self, spares: Any) -> None:
        """What the running totals of the limiter's spares (billing.limits.spares.Spares) grew by since the last
        look; a new limiter (the metering started again) counts from nothing."""
        source, seen_taken, seen_given_back = self._spares_seen
        if spares is not source:
            seen_taken = seen_given_back = 0
        taken, given_back = spares.taken, spares.given_back  # ints, each read whole under the GIL
        if taken > seen_taken:
            self.spares_taken.inc(taken - seen_taken)
        if given_back > seen_given_back:
            self.spares_given_back.inc(given_back - seen_given_back)
        self._spares_seen = (spares, taken, given_back)

    def flush(self) -> None:
        """Add what was recorded since the last flush to the metrics (a few writes per label set)."""
        for tally in self._tallies.values():
            tally.flush()
        self._overhead.flush()


_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def build(registry: CollectorRegistry | None = None) -> Metrics:
    return Metrics(registry or CollectorRegistry(), tenant_labels=settings.PORTICO_METRICS_TENANT_LABELS)
