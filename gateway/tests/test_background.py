"""enqueue without a broker (the job runs on this process's threads) and with one (it reaches the broker)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import shared_task
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError

from gateway import background
from gateway.background import Runner, enqueue
from gateway.tasks_base import BACKOFF, MAX_RETRIES, TRANSIENT_ERRORS, PorticoTask, portico_task, retry_policy

DEADLINE = 5.0
RUNS: dict[str, list[tuple[str, str]]] = defaultdict(list)  # key -> (value, thread name), in the order they ran
GATES: dict[str, threading.Event] = defaultdict(threading.Event)
ATTEMPTS: dict[str, list[float]] = defaultdict(list)


@shared_task(name="gateway.tests.background.record")
def record(key: str, value: str = "") -> None:
    RUNS[key].append((value, threading.current_thread().name))


@shared_task(name="gateway.tests.background.gated")
def gated(key: str) -> None:
    """Waits until the test opens `key`'s gate."""
    GATES[key].wait(DEADLINE)
    RUNS[key].append(("gated", threading.current_thread().name))


# No wait between retries (the backoff's maximum is 0), so the policy's counting is tested quickly.
@portico_task(name="gateway.tests.background.flaky", retry_backoff_max=0)
def flaky(key: str, failures: int) -> None:
    ATTEMPTS[key].append(time.monotonic())
    if len(ATTEMPTS[key]) <= failures:
        raise ConnectionError("the upstream went away")
    RUNS[key].append(("done", threading.current_thread().name))


@portico_task(name="gateway.tests.background.slow_to_recover", retry_backoff=1, retry_backoff_max=1, retry_jitter=False)
def slow_to_recover(key: str) -> None:
    ATTEMPTS[key].append(time.monotonic())
    if len(ATTEMPTS[key]) == 1:
        raise TimeoutError("no answer")


@portico_task(name="gateway.tests.background.broken")
def broken(key: str) -> None:
    ATTEMPTS[key].append(time.monotonic())
    raise ValueError("a bug, not an outage")


def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.005)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return request.node.name


@pytest.fixture
def embedded(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    """No broker: jobs run on the threads of a runner of this test's own."""
    settings.PORTICO_CELERY_BROKER_URL = ""
    runner = Runner()
    monkeypatch.setattr(background, "runner", runner)
    yield runner
    GATES.clear()  # opens nothing: gated jobs still waiting give up at their deadline
    runner.stop(timeout=DEADLINE)


# --- the retry policy ---


def test_the_shared_policy_retries_transient_failures_with_exponential_backoff_and_jitter():
    assert retry_policy() == {
        "autoretry_for": TRANSIENT_ERRORS,
        "max_retries": MAX_RETRIES,
        "retry_backoff": BACKOFF,
        "retry_backoff_max": 300,
        "retry_jitter": True,
    }
    assert isinstance(flaky, PorticoTask)
    assert (flaky.autoretry_for, flaky.max_retries, flaky.retry_jitter) == (TRANSIENT_ERRORS, MAX_RETRIES, True)
    assert ConnectionError in TRANSIENT_ERRORS
    assert ValueError not in TRANSIENT_ERRORS


def test_a_transient_failure_is_retried_until_it_succeeds(embedded, key):
    enqueue("gateway.tests.background.flaky", key, 3)

    until(lambda: RUNS[key], "the job succeeded")
    assert len(ATTEMPTS[key]) == 4


def test_retries_stop_at_the_policys_maximum_and_the_failure_is_logged(embedded, key, caplog):
    with caplog.at_level(logging.WARNING, logger="gateway.background"):
        enqueue("gateway.tests.background.flaky", key, 100)
        until(lambda: "background job gateway.tests.background.flaky failed" in caplog.text, "given up")

    assert len(ATTEMPTS[key]) == 1 + MAX_RETRIES
    assert not RUNS[key]
    assert "ConnectionError: the upstream went away" in caplog.text


def test_a_retry_waits_out_its_backoff(embedded, key):
    enqueue("gateway.tests.background.slow_to_recover", key)

    until(lambda: len(ATTEMPTS[key]) == 2, "the retry")
    assert ATTEMPTS[key][1] - ATTEMPTS[key][0] >= 1.0  # factor 1, first retry: 1 × 2**0 seconds, no jitter


def test_a_failure_that_is_not_transient_is_not_retried(embedded, key, caplog):
    with caplog.at_level(logging.ERROR, logger="gateway.background"):
        enqueue("gateway.tests.background.broken", key)
        until(lambda: "ValueError: a bug, not an outage" in caplog.text, "the failure logged")

    assert len(ATTEMPTS[key]) == 1


# --- without a broker ---


def test_without_a_broker_the_job_runs_on_a_background_thread_and_the_caller_does_not_wait(embedded, key):
    started = time.monotonic()
    enqueue("gateway.tests.background.gated", key)
    returned = time.monotonic()

    assert returned - started < 0.1
    assert not RUNS[key], "the job waits at its gate: it did not run in the caller"
    GATES[key].set()
    until(lambda: RUNS[key], "the job ran")
    [(_, thread)] = RUNS[key]
    assert thread.startswith("portico-background-")


def test_celerys_own_delay_runs_the_job_the_same_way_without_a_broker(embedded, key):
    record.delay(key, "delayed")

    until(lambda: RUNS[key], "the job ran")
    assert RUNS[key][0][0] == "delayed"
    assert RUNS[key][0][1].startswith("portico-background-")


def test_a_countdown_delays_the_job(embedded, key):
    enqueued = time.monotonic()
    enqueue("gateway.tests.background.record", key, "later", countdown=0.3)

    until(lambda: RUNS[key], "the job ran")
    assert time.monotonic() - enqueued >= 0.3


def test_interactive_jobs_go_first_and_batch_jobs_last(embedded, settings, key):
    settings.PORTICO_BACKGROUND_THREADS = 1
    enqueue("gateway.tests.background.gated", key)  # holds the one thread while the others are queued
    until(lambda: embedded.pending() == 0, "the gated job started")
    for queue in ("batch", "default", "interactive", "batch", "interactive"):
        enqueue("gateway.tests.background.record", key, queue, queue=queue)

    GATES[key].set()

    until(lambda: len(RUNS[key]) == 6, "every job ran")
    assert [value for value, _ in RUNS[key]] == [
        "gated",
        "interactive",
        "interactive",
        "default",
        "batch",
        "batch",
    ]


def test_a_full_queue_drops_the_new_job_and_says_so_rather_than_wait(embedded, settings, key, caplog):
    settings.PORTICO_BACKGROUND_THREADS = 1
    settings.PORTICO_BACKGROUND_QUEUE_LIMIT = 2
    enqueue("gateway.tests.background.gated", key)
    until(lambda: embedded.pending() == 0, "the gated job started")

    with caplog.at_level(logging.ERROR, logger="gateway.background"):
        for value in ("kept", "kept", "dropped"):
            enqueue("gateway.tests.background.record", key, value)

    assert "background job gateway.tests.background.record dropped: 2 jobs were waiting" in caplog.text
    GATES[key].set()
    until(lambda: len(RUNS[key]) == 3, "the jobs that were kept ran")
    assert [value for value, _ in RUNS[key]] == ["gated", "kept", "kept"]


def test_an_unknown_task_is_logged_once_and_dropped(embedded, key, caplog, monkeypatch):
    monkeypatch.setattr("gateway.schedule._warned", set())
    with caplog.at_level(logging.WARNING):
        enqueue("gateway.tests.background.nothing_by_that_name")
        enqueue("gateway.tests.background.nothing_by_that_name")
        enqueue("gateway.tests.background.record", key, "after")
        until(lambda: RUNS[key], "the next job ran")

    assert caplog.text.count("gateway.tests.background.nothing_by_that_name skipped") == 1


def test_an_unknown_queue_is_refused_at_once():
    with pytest.raises(ValueError, match="unknown queue 'urgent'"):
        enqueue("gateway.tests.background.record", "k", queue="urgent")


@pytest.mark.django_db
def test_inside_a_transaction_the_job_is_queued_once_it_commits(embedded, key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        enqueue("gateway.tests.background.record", key, "committed")
        assert embedded.pending() == 0
        assert not RUNS[key]

    assert len(callbacks) == 1
    until(lambda: RUNS[key], "the job ran after the commit")


@pytest.mark.django_db(transaction=True)
def test_a_job_enqueued_in_a_transaction_that_rolls_back_never_runs(embedded, key):
    with transaction.atomic():
        enqueue("gateway.tests.background.record", key, "rolled back")
        transaction.set_rollback(True)
    enqueue("gateway.tests.background.record", key, "after")

    until(lambda: RUNS[key], "the next job ran")
    assert [value for value, _ in RUNS[key]] == ["after"]


# --- with a broker ---


@pytest.fixture
def broker(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The test Redis as broker (as tests/testenv.py configures it); the broker's keys are removed afterwards."""
    assert settings.PORTICO_CELERY_BROKER_URL == settings.REDIS_URL
    runner = Runner()
    monkeypatch.setattr(background, "runner", runner)
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    runner.stop(timeout=DEADLINE)
    for stale in client.scan_iter(f"{settings.PORTICO_REDIS_PREFIX}:celery:*"):
        client.delete(stale)
    client.close()


def test_with_a_broker_the_job_is_published_to_its_queue_and_not_run_here(broker, key):
    queue = f"{settings.PORTICO_REDIS_PREFIX}:celery:batch"

    enqueue("gateway.tests.background.record", key, "published", queue="batch", countdown=60)

    until(lambda: broker.llen(queue) == 1, "the job reached the broker")
    message = json.loads(broker.lindex(queue, 0))
    assert message["headers"]["task"] == "gateway.tests.background.record"
    assert message["headers"]["eta"] is not None  # the countdown travels with the job: the worker waits it out
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([key, "published"], {})
    assert not RUNS[key]


def test_a_broker_that_does_not_take_the_job_is_logged_and_the_caller_never_knows(broker, key, monkeypatch, caplog):
    def refuse(*args: object, **kwargs: object) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(background.app, "send_task", refuse)
    with caplog.at_level(logging.ERROR, logger="gateway.background"):
        enqueue("gateway.tests.background.record", key, "lost")
        until(lambda: "dropped: the broker did not take it" in caplog.text, "the failure logged")

    assert "Connection refused" in caplog.text
