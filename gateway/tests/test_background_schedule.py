"""The embedded schedule: without a broker a server process runs the periodic jobs itself, one process at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import shared_task

from gateway import background, schedule
from gateway.background import EmbeddedScheduler, Runner, start_scheduler
from gateway.schedule import PeriodicJob

DEADLINE = 5.0
TICKS: dict[str, list[float]] = defaultdict(list)
GATE = threading.Event()


@shared_task(name="gateway.tests.background_schedule.tick")
def tick() -> None:
    TICKS["tick"].append(time.monotonic())


@shared_task(name="gateway.tests.background_schedule.slow")
def slow() -> None:
    TICKS["slow"].append(time.monotonic())
    GATE.wait(DEADLINE)


TICK = PeriodicJob("gateway.tests.background_schedule.tick", "PORTICO_BATCH_SWEEP_INTERVAL")
SLOW = PeriodicJob("gateway.tests.background_schedule.slow", "PORTICO_BATCH_SWEEP_INTERVAL")
GONE = PeriodicJob("nowhere.tasks.gone", "PORTICO_BATCH_SWEEP_INTERVAL")


def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def embedded(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    settings.PORTICO_CELERY_BROKER_URL = ""
    settings.PORTICO_BATCH_SWEEP_INTERVAL = 0.05
    runner = Runner()
    monkeypatch.setattr(background, "runner", runner)
    monkeypatch.setattr(background, "_LOCK_RETRY", 0.02)
    monkeypatch.setattr(schedule, "_warned", set())
    TICKS.clear()
    GATE.clear()
    yield runner
    GATE.set()
    runner.stop(timeout=DEADLINE)


@pytest.fixture
def schedulers(tmp_path: Path) -> Iterator[Callable[..., EmbeddedScheduler]]:
    made: list[EmbeddedScheduler] = []

    def make(*jobs: PeriodicJob) -> EmbeddedScheduler:
        scheduler = EmbeddedScheduler(jobs=jobs, lock_path=tmp_path / "scheduler.lock")
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop()


def test_the_periodic_job_runs_at_its_settings_interval_until_the_schedule_stops(schedulers):
    scheduler = schedulers(TICK)
    started = time.monotonic()
    scheduler.start()

    until(lambda: len(TICKS["tick"]) >= 3, "three runs")
    scheduler.stop()

    assert TICKS["tick"][0] - started >= 0.05, "the first run comes one interval after the start, as with beat"
    gaps = [later - earlier for earlier, later in zip(TICKS["tick"], TICKS["tick"][1:], strict=False)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert not any(thread.name == "portico-schedule" for thread in threading.enumerate())


def test_one_process_per_data_directory_keeps_the_schedule_and_another_takes_over_when_it_stops(schedulers):
    first, second = schedulers(TICK), schedulers(SLOW)
    first.start()
    until(lambda: TICKS["tick"], "the first scheduler ran its job")
    second.start()
    until(lambda: len(TICKS["tick"]) >= 5, "more runs of the first")
    assert not TICKS["slow"], "the second scheduler waits while the first holds the lock"

    first.stop()

    until(lambda: TICKS["slow"], "the second took over")


def test_a_job_still_running_is_not_started_again(schedulers, caplog):
    scheduler = schedulers(SLOW)
    with caplog.at_level(logging.WARNING, logger="gateway.background"):
        scheduler.start()
        until(lambda: "periodic job gateway.tests.background_schedule.slow skipped" in caplog.text, "a skipped run")

    assert len(TICKS["slow"]) == 1
    GATE.set()
    until(lambda: len(TICKS["slow"]) == 2, "the next run once the first is over")


def test_a_job_whose_task_is_missing_is_skipped_with_one_warning_and_the_others_run(schedulers, caplog):
    scheduler = schedulers(GONE, TICK)
    with caplog.at_level(logging.WARNING, logger="gateway.schedule"):
        scheduler.start()
        until(lambda: len(TICKS["tick"]) >= 3, "runs of the job that exists")

    assert caplog.text.count("nowhere.tasks.gone skipped") == 1


def test_the_server_keeps_the_schedule_only_without_a_broker_and_when_the_setting_allows(settings, monkeypatch):
    monkeypatch.setattr(background, "scheduler", EmbeddedScheduler(jobs=()))
    settings.PORTICO_INPROCESS_SCHEDULER = False
    assert start_scheduler() is False

    settings.PORTICO_INPROCESS_SCHEDULER = True
    settings.PORTICO_CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert start_scheduler() is False

    settings.PORTICO_CELERY_BROKER_URL = ""
    try:
        assert start_scheduler() is True
        assert any(thread.name == "portico-schedule" for thread in threading.enumerate())
    finally:
        background.scheduler.stop()
