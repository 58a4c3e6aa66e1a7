"""What operators watch: Prometheus metrics, the per-request log line, and Portico's own time per request.

    clock.py        RequestClock: a request's time in Portico, upstream waits left out (x-portico-overhead-ms)
    handoff.py      the request path hands each finished call over; a thread updates metrics and writes the log
    metrics.py      the metric definitions, and how a call updates them
    gauges.py       snapshot age, ledger backlog, queue depth, breaker states
    request_log.py  the `portico.requests` line and the JSON log format
    registry.py     this process's metrics, or every worker's (multiprocess mode), as exposition text
    rundir.py       the per-run directory of the workers' metric files, made by `portico serve`
    access.py       who may scrape
    views.py        GET /metrics

Nothing here is imported by this package's __init__: rundir.py must be usable
before prometheus_client is imported (see there). docs/observability.md is
the operators' guide.
"""
