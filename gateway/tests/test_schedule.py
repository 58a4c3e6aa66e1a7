"""The schedule: every periodic job's interval comes from its setting, 0 turns it off, a missing task is skipped."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from celery import shared_task

from gateway import schedule
from gateway.celery import app
from gateway.schedule import JOBS, Due, PeriodicJob, Scheduler, beat_schedule, periodic_jobs

EVERY_TASK = {job.task for job in JOBS}


@shared_task(name="gateway.tests.test_schedule.tick")
def tick() -> None:
    pass


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "_warned", set())


def test_the_seven_jobs_run_at_their_settings_intervals(settings):
    settings.PORTICO_MODEL_LIST_CHECK_INTERVAL = 60.0
    settings.PORTICO_DISCOVERY_INTERVAL = 3600.0
    settings.PORTICO_HEALTH_CHECK_INTERVAL = 45.0
    settings.PORTICO_BATCH_SWEEP_INTERVAL = 30.0
    settings.PORTICO_ROLLUP_INTERVAL = 60.0
    settings.PORTICO_LEDGER_PARTITION_INTERVAL = 3600.0
    settings.PORTICO_QUEUE_SWEEP_INTERVAL = 20.0

    assert periodic_jobs() == [
        Due("providers.tasks.model_list_sources_refresh", 60.0),
        Due("providers.tasks.provider_discovery_run", 3600.0),
        Due("providers.tasks.deployment_health_probe", 45.0),
        Due("gateway.tasks.batches_sweep", 30.0),
        Due("gateway.tasks_queue.queue_jobs_sweep", 20.0),
        Due("billing.tasks.usage_rollups_update", 60.0),
        Due("billing.tasks.ledger_partitions_maintain", 3600.0),
    ]


def test_a_changed_setting_changes_the_interval_in_beats_schedule(settings):
    settings.PORTICO_HEALTH_CHECK_INTERVAL = 7.5

    entries = beat_schedule(registered=EVERY_TASK)

    assert entries["providers.tasks.deployment_health_probe"] == {
        "task": "providers.tasks.deployment_health_probe",
        "schedule": timedelta(seconds=7.5),
    }


def test_an_interval_of_0_turns_the_job_off(settings):
    settings.PORTICO_DISCOVERY_INTERVAL = 0
    settings.PORTICO_BATCH_SWEEP_INTERVAL = 0
    settings.PORTICO_ROLLUP_INTERVAL = 0
    settings.PORTICO_LEDGER_PARTITION_INTERVAL = 0
    settings.PORTICO_QUEUE_SWEEP_INTERVAL = 0

    assert set(beat_schedule(registered=EVERY_TASK)) == {
        "providers.tasks.model_list_sources_refresh",
        "providers.tasks.deployment_health_probe",
    }
    assert [job.task for job in periodic_jobs()] == [
        "providers.tasks.model_list_sources_refresh",
        "providers.tasks.deployment_health_probe",
    ]


def test_a_job_whose_task_is_not_registered_is_skipped_and_said_once(caplog):
    jobs = (PeriodicJob("nowhere.tasks.gone", "PORTICO_BATCH_SWEEP_INTERVAL"), *JOBS)
    registered = EVERY_TASK

    with caplog.at_level(logging.WARNING, logger="gateway.schedule"):
        first = beat_schedule(jobs, registered=registered)
        second = beat_schedule(jobs, registered=registered)

    assert "nowhere.tasks.gone" not in first
    assert first == second
    assert set(first) == EVERY_TASK
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [
        "periodic job nowhere.tasks.gone skipped: no task of that name is registered (is its module missing?)"
    ]


def test_beats_scheduler_builds_its_entries_from_the_settings_and_leaves_missing_tasks_out(settings, tmp_path: Path):
    settings.PORTICO_BATCH_SWEEP_INTERVAL = 2.5

    class TwoJobs(Scheduler):
        jobs = (
            PeriodicJob("gateway.tests.test_schedule.tick", "PORTICO_BATCH_SWEEP_INTERVAL"),
            PeriodicJob("nowhere.tasks.gone", "PORTICO_BATCH_SWEEP_INTERVAL"),
        )

    scheduler = TwoJobs(app=app, schedule_filename=str(tmp_path / "beat-schedule"))
    try:
        entries = scheduler.schedule
    finally:
        scheduler.close()

    assert set(entries) == {"gateway.tests.test_schedule.tick"}
    assert entries["gateway.tests.test_schedule.tick"].schedule.run_every == timedelta(seconds=2.5)
