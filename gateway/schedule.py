"""Every periodic job of Portico, in one place, with its interval from settings.

    JOBS                 the task each job runs and the setting that holds its interval (seconds; 0: off)
    AT_START             jobs queued once when the schedule starts being kept, before the first interval
    periodic_jobs()      the jobs that are on, with their intervals, as settings have them now
    beat_schedule()      Celery beat's schedule for those whose task is registered
    Scheduler            beat's scheduler class (CELERY_BEAT_SCHEDULER): builds its schedule from beat_schedule()

With a broker, `portico beat` sends these jobs to the workers; without one,
each server process keeps the same schedule itself (gateway.background).

A job whose task is not registered (its module is missing from this version)
is left out, with one warning per process, rather than sent to workers that
would refuse it at every interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    task: str
    setting: str  # the setting that holds its interval in seconds; 0 turns the job off


JOBS: tuple[PeriodicJob, ...] = (
    # Each model-list source has an interval of its own: this job refreshes those that are due.
    PeriodicJob("providers.tasks.model_list_sources_refresh", "PORTICO_MODEL_LIST_CHECK_INTERVAL"),
    PeriodicJob("providers.tasks.provider_discovery_run", "PORTICO_DISCOVERY_INTERVAL"),
    PeriodicJob("providers.tasks.deployment_health_probe", "PORTICO_HEALTH_CHECK_INTERVAL"),
    PeriodicJob("gateway.tasks.batches_sweep", "PORTICO_BATCH_SWEEP_INTERVAL"),
    # Queued (202) jobs whose hand-over was lost, or past their deadline with no run to expire them; old ones pruned.
    PeriodicJob("gateway.tasks_queue.queue_jobs_sweep", "PORTICO_QUEUE_SWEEP_INTERVAL"),
    # The ledger's new rows into the hourly and daily usage rollups that reports read (billing/rollups.py).
    PeriodicJob("billing.tasks.usage_rollups_update", "PORTICO_ROLLUP_INTERVAL"),
    PeriodicJob("billing.tasks.ledger_partitions_maintain", "PORTICO_LEDGER_PARTITION_INTERVAL"),
)


@dataclass(frozen=True)
class StartJob:
    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)


# A worker queues these as it starts (providers.tasks.refresh_model_lists_at_start); without a broker, the process
# that takes the embedded schedule does (gateway.background). The settings' model list may be new or changed.
AT_START: tuple[StartJob, ...] = (StartJob("providers.tasks.model_list_sources_refresh", {"at_start": True}),)


@dataclass(frozen=True)
class Due:
    task: str
    interval: float  # seconds


def periodic_jobs(jobs: Iterable[PeriodicJob] = JOBS) -> list[Due]:
    """The jobs that are on (their interval setting above 0), with their intervals."""
    due = [Due(job.task, float(getattr(settings, job.setting))) for job in jobs]
    return [job for job in due if job.interval > 0]


def beat_schedule(jobs: Iterable[PeriodicJob] = JOBS, *, registered: Container[str]) -> dict[str, dict[str, Any]]:
    """Celery beat's schedule: every job that is on and whose task is registered, under its task's name."""
    return {
        job.task: {"task": job.task, "schedule": timedelta(seconds=job.interval)}
        for job in periodic_jobs(jobs)
        if is_registered(job.task, registered)
    }


_warned: set[str] = set()
_warned_lock = threading.Lock()


def is_registered(task: str, registered: Container[str]) -> bool:
    """Whether `task` is among `registered`; the first time it is not, say so."""
    if task in registered:
        return True
    with _warned_lock:
        if task in _warned:
            return False
        _warned.add(task)
    logger.warning("periodic job %s skipped: no task of that name is registered (is its module missing?)", task)
    return False


class Scheduler(PersistentScheduler):
    """Beat's scheduler, keeping its last-run times in its schedule file, with its entries from beat_schedule()."""

    jobs: tuple[PeriodicJob, ...] = JOBS

    def setup_schedule(self) -> None:
        # Beat has imported every app's tasks module by now (its loader runs autodiscovery before this).
        self.app.conf.beat_schedule = beat_schedule(self.jobs, registered=self.app.tasks)
        super().setup_schedule()
