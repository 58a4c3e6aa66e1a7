"""`portico worker` and `portico beat`: their defaults, and what they say without a broker.

The commands themselves run as real processes in tests/integration/test_celery_processes.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import cli
from gateway.cli import main


@pytest.fixture
def celery_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """What the commands would hand to Celery, instead of running it."""
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cli, "_celery", lambda command, options: calls.append((command, options)) or 0)
    # The worker sets the pool size for the settings it is about to load; put it back afterwards.
    monkeypatch.setenv("PORTICO_DB_POOL_SIZE", os.environ.get("PORTICO_DB_POOL_SIZE", "10"))
    monkeypatch.setenv("PORTICO_LOG_LEVEL", "INFO")
    return calls


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_without_a_broker_it_says_jobs_run_in_process_and_how_to_set_one_and_exits_2(
    command, settings, capsys, celery_calls
):
    settings.PORTICO_CELERY_BROKER_URL = ""
    settings.REDIS_URL = ""

    assert main([command]) == 2

    said = capsys.readouterr().err
    assert f"portico {command}: no broker is configured" in said
    assert "neither PORTICO_CELERY_BROKER_URL nor REDIS_URL is set" in said
    assert "background jobs run inside each\n`portico serve` process" in said
    assert "export PORTICO_CELERY_BROKER_URL=redis://" in said
    assert "docs/background-jobs.md" in said
    assert celery_calls == []


def test_with_redis_but_an_embedded_broker_it_names_the_setting(settings, capsys, celery_calls):
    settings.PORTICO_CELERY_BROKER_URL = ""

    assert main(["worker"]) == 2

    assert "(PORTICO_CELERY_BROKER_URL=embedded)" in capsys.readouterr().err


def test_the_worker_takes_every_queue_in_order_fairly_with_a_small_database_pool(celery_calls, monkeypatch):
    monkeypatch.setenv("PORTICO_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("PORTICO_WORKER_DB_POOL_SIZE", raising=False)

    assert main(["worker", "-n", "one@host", "--include", "tests.celery_tasks"]) == 0

    [(command, options)] = celery_calls
    assert command == "worker"
    assert options == [
        "--concurrency",
        "2",
        "--queues",
        "interactive,default,batch",
        "--loglevel",
        "WARNING",
        "--max-tasks-per-child",
        "100",
        "--optimization",
        "fair",
        "--without-mingle",
        "--without-gossip",
        "-n",
        "one@host",
        "--include",
        "tests.celery_tasks",
    ]
    assert os.environ["PORTICO_DB_POOL_SIZE"] == "2"


def test_the_workers_options_override_its_defaults(celery_calls):
    assert main(["worker", "-c", "4", "-Q", "batch", "--db-pool-size", "3", "--max-tasks-per-child", "10"]) == 0

    [(_, options)] = celery_calls
    assert options[:8] == [
        "--concurrency",
        "4",
        "--queues",
        "batch",
        "--loglevel",
        "INFO",
        "--max-tasks-per-child",
        "10",
    ]
    assert os.environ["PORTICO_DB_POOL_SIZE"] == "3"


def test_the_worker_refuses_a_queue_portico_does_not_have(capsys, celery_calls):
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--queues", "default,urgent"])

    assert exit_info.value.code == 2
    assert "queues are interactive, default, batch" in capsys.readouterr().err


def test_beat_keeps_its_schedule_in_the_data_directory(settings, celery_calls, tmp_path: Path):
    settings.CELERY_BEAT_SCHEDULE_FILENAME = str(tmp_path / "data" / "celerybeat-schedule")

    assert main(["beat", "--max-interval", "5"]) == 0

    [(command, options)] = celery_calls
    assert command == "beat"
    assert options == [
        "--schedule",
        settings.CELERY_BEAT_SCHEDULE_FILENAME,
        "--loglevel",
        "INFO",
        "--max-interval",
        "5",
    ]
    assert (tmp_path / "data").is_dir()


def test_serve_still_refuses_options_it_does_not_know(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--concurrency", "2"])

    assert exit_info.value.code == 2
    assert "unrecognized arguments: --concurrency 2" in capsys.readouterr().err
