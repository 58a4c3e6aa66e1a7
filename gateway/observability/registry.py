"""Where metrics live, and what /metrics gathers: this process's, or every worker's.

Under `portico serve` PROMETHEUS_MULTIPROC_DIR is set (rundir.py, before the
workers start) and prometheus_client keeps every value in a small
memory-mapped file per worker process there. A scrape, answered by any one
worker, merges all the files (MultiProcessCollector): counters and histograms
sum over every worker that ever ran in this server's life, live gauges over
the workers still running. Without the variable (tests, `python -m
gateway.server`) the process's own registry is read directly.
"""

from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.metrics_core import Metric

from gateway.observability.gauges import BreakerCollector
from gateway.observability.rundir import ENV

_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) or None


@functools.cache
def process_registry() -> CollectorRegistry:
    """The registry this process's metrics are made in."""
    return CollectorRegistry()


@functools.cache
def _single_process_registry() -> CollectorRegistry:
    registry = process_registry()
    registry.register(BreakerCollector())
    return registry


def scrape() -> bytes:
    """The exposition text of every metric (every worker's, in multiprocess mode)."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(_single_process_registry())
    forget_dead_workers(directory)
    registry = CollectorRegistry()
    registry.register(_WorkersCollector(directory))
    registry.register(BreakerCollector())
    return generate_latest(registry)


_HEADER_BYTES = 8  # where a metric file says how much of it is used


class _WorkersCollector:
    """prometheus_client's merge of the workers' files, less those not yet sized (`sized_files`)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        return prometheus_multiprocess.MultiProcessCollector.merge(sized_files(self.directory), accumulate=True)


def sized_files(directory: str) -> list[str]:
    """The workers' metric files that can be read.

    A worker creates its file for a kind of metric the first time it uses one, and sizes it a moment later:
    read in between, the empty file made prometheus_client's merge raise, and the scrape answer a 500.
    """
    files = []
    for path in glob.glob(os.path.join(directory, "*.db")):
        try:
            if os.path.getsize(path) >= _HEADER_BYTES:
                files.append(path)
        except FileNotFoundError:  # a dead worker's live gauges, removed meanwhile
            continue
    return files


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (uvicorn restarts a worker that dies), as they no longer hold."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_FILE.fullmatch(os.path.basename(path))
        if match is not None and not _alive(int(match.group(1))):
            prometheus_multiprocess.mark_process_dead(int(match.group(1)), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, if not ours
    return True
