"""The usage rollups hold exactly the ledger's sums per hour and day: late rows counted, nothing counted twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from billing import rollups
from billing.histograms import bucket_columns
from billing.models import (
    DailyDeploymentRollup,
    DailyUsageRollup,
    HourlyDeploymentRollup,
    HourlyUsageRollup,
    RollupSums,
    UsageRecord,
    UsageRollup,
    UsageRollupCursor,
)
from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import Expected, expected_rollups, make_ledger
from tenants.models import ApiKey
from tenants.tests.factories import make_key, make_tenant

START = datetime(2026, 11, 14, 21, 0, tzinfo=UTC)
SUMS = (
    "requests",
    "errors_client",
    "errors_rate_limited",
    "errors_timeout",
    "errors_upstream",
    "errors_other",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost",
    "provider_cost",
    "priced_cost",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)
GROUP = ("bucket", "tenant_id", "api_key_id", "model", "provider", "deployment_id")
DEPLOYMENT_GROUP = ("bucket", "model", "provider", "deployment_id")


def _keys() -> list[ApiKey]:
    acme, globex = make_tenant(slug="acme"), make_tenant(slug="globex")
    return [make_key(tenant=tenant, name=f"key {n}").api_key for tenant in (acme, globex, acme) for n in (1, 2)]


def _stored(rollup: type[RollupSums]) -> dict[tuple[Any, ...], Expected]:
    group = GROUP if issubclass(rollup, UsageRollup) else DEPLOYMENT_GROUP
    stored = {}
    for row in rollup.objects.values():
        stored[tuple(row[name] for name in group)] = Expected(
            sums={name: row[name] for name in SUMS},
            latency=[row[name] for name in bucket_columns("latency")],
            ttft=[row[name] for name in bucket_columns("ttft")],
        )
    return stored


def _money(value: Any) -> Decimal:
    # PostgreSQL sums numerics exactly; SQLite stores them as doubles, good to far below a cent.
    exact = connection.vendor == "postgresql"
    return Decimal(value) if exact else Decimal(value).quantize(Decimal("1e-8"))


def _normal(groups: dict[tuple[Any, ...], Expected]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        group: (
            tuple(_money(value.sums.get(name, 0)) for name in SUMS),
            tuple(value.latency),
            tuple(value.ttft),
        )
        for group, value in groups.items()
    }


def assert_rollups_match_the_ledger() -> None:
    records = list(UsageRecord.objects.all())
    for rollup, daily in (
        (HourlyUsageRollup, False),
        (DailyUsageRollup, True),
        (HourlyDeploymentRollup, False),
        (DailyDeploymentRollup, True),
    ):
        expected = expected_rollups(records, daily=daily, per_key=issubclass(rollup, UsageRollup))
        assert _normal(_stored(rollup)) == _normal(expected), rollup.__name__


@pytest.mark.django_db
class TestUpkeep:
    def test_the_rollups_hold_the_ledgers_sums_per_hour_and_per_day(self):
        make_ledger(keys=_keys(), rows=600, start=START, hours=30)

        run = usage_rollups_update()

        assert run.caught_up
        assert run.last_id == UsageRecord.objects.order_by("-pk").first().pk
        assert_rollups_match_the_ledger()
        assert HourlyUsageRollup.objects.values("bucket").distinct().count() == 30
        assert DailyUsageRollup.objects.values("bucket").distinct().count() == 3

    def test_a_late_row_is_added_to_its_old_hour_on_the_next_run(self):
        keys = _keys()
        make_ledger(keys=keys, rows=200, start=START, hours=10)
        usage_rollups_update()
        old_hour = START + timedelta(hours=3)
        before = HourlyUsageRollup.objects.filter(bucket=old_hour).count()

        # A spool flushed after an outage: the row's time is hours before the newest rows already counted.
        late = make_ledger(keys=keys[:1], rows=1, start=old_hour, hours=1, seed=99, model="late-model")
        run = usage_rollups_update()

        assert run.first_id == late[0].pk - 1
        assert HourlyUsageRollup.objects.filter(bucket=old_hour).count() == before + 1
        assert HourlyUsageRollup.objects.get(bucket=old_hour, model="late-model").requests == 1
        assert_rollups_match_the_ledger()

    def test_running_again_adds_nothing(self):
        make_ledger(keys=_keys(), rows=300, start=START, hours=5)
        usage_rollups_update()
        first = _normal(_stored(HourlyUsageRollup))

        again = usage_rollups_update()

        assert again.chunks == 0
        assert again.caught_up
        assert _normal(_stored(HourlyUsageRollup)) == first
        assert_rollups_match_the_ledger()

    def test_chunks_add_up_to_the_same_sums_as_one_pass(self):
        make_ledger(keys=_keys(), rows=250, start=START, hours=6)

        run = usage_rollups_update(chunk_ids=17)

        assert run.chunks == 15  # ceil(250 / 17)
        assert_rollups_match_the_ledger()

    def test_a_run_out_of_time_leaves_the_rest_to_the_next_one(self):
        make_ledger(keys=_keys(), rows=100, start=START, hours=2)

        first = usage_rollups_update(seconds=0, chunk_ids=30)
        assert (first.chunks, first.caught_up) == (1, False)
        assert UsageRollupCursor.objects.get().last_id == first.last_id

        rest = usage_rollups_update(chunk_ids=30)
        assert rest.first_id == first.last_id
        assert rest.caught_up
        assert_rollups_match_the_ledger()

    def test_rows_without_tenant_key_or_deployment_are_counted_under_0(self):
        UsageRecord.objects.create(
            request_id="orphan", created_at=START, model="gpt-4o", status=401, error_type="invalid_api_key"
        )

        usage_rollups_update()

        row = HourlyUsageRollup.objects.get()
        assert (row.tenant_id, row.api_key_id, row.deployment_id) == (0, 0, 0)
        assert (row.requests, row.errors_client) == (1, 1)

    @pytest.mark.parametrize(
        ("status", "error_type", "column"),
        [
            (200, "", None),
            (400, "invalid_request_error", "errors_client"),
            (404, "upstream_invalid_request", "errors_client"),
            (408, "request_timeout", "errors_timeout"),
            (504, "upstream_timeout", "errors_timeout"),
            (429, "rate_limit_exceeded", "errors_rate_limited"),
            (429, "upstream_rate_limited", "errors_rate_limited"),
            (502, "upstream_unreachable", "errors_upstream"),
            (503, "no_deployment_available", "errors_upstream"),
            (500, "internal_error", "errors_other"),
            (503, "limiter_unavailable", "errors_other"),
        ],
    )
    def test_each_failure_is_counted_in_one_error_class(self, status, error_type, column):
        UsageRecord.objects.create(request_id="one", created_at=START, model="m", status=status, error_type=error_type)

        usage_rollups_update()

        row = HourlyUsageRollup.objects.values().get()
        errors = {name: row[name] for name in SUMS if name.startswith("errors_")}
        assert errors == {name: int(name == column) for name in errors}
        assert row["latency_b00"] == (1 if column is None else 0)  # latency counts successes only

    def test_the_periodic_task_updates_the_rollups(self):
        from billing.tasks import usage_rollups_update as task

        make_ledger(keys=_keys(), rows=50, start=START, hours=2)

        task.apply().get()

        assert_rollups_match_the_ledger()

    def test_the_task_queues_another_run_while_behind(self, monkeypatch):
        from billing import tasks

        make_ledger(keys=_keys(), rows=40, start=START, hours=1)
        monkeypatch.setattr(rollups, "RUN_SECONDS", 0)
        monkeypatch.setattr(rollups, "CHUNK_IDS", 10)
        queued: list[tuple[Any, ...]] = []
        monkeypatch.setattr(tasks.usage_rollups_update, "delay", lambda *args: queued.append(args))

        tasks.usage_rollups_update.apply().get()
        assert queued == [()]
        assert UsageRollupCursor.objects.get().last_id < UsageRecord.objects.order_by("-pk").first().pk


def test_the_task_goes_by_the_name_the_schedule_gives():
    from billing.tasks import usage_rollups_update as task

    assert task.name == "billing.tasks.usage_rollups_update"  # gateway/schedule.py's JOBS


# --- Concurrency (PostgreSQL: each thread its own connection) ---------------------------------------


def _in_thread(work: Callable[[], Any], results: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:  # noqa: BLE001 - handed to the test, which fails on it
            results.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def postgres(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent runs need a database with separate connections (PostgreSQL)")


@pytest.mark.usefixtures("postgres")
def test_two_runs_at_once_count_every_row_once():
    make_ledger(keys=_keys(), rows=800, start=START, hours=12)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run() -> rollups.RollupRun:
        barrier.wait(timeout=10)
        return usage_rollups_update(chunk_ids=40)

    threads = [_in_thread(run, results) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=60)

    assert all(isinstance(result, rollups.RollupRun) for result in results), results
    assert sum(result.chunks for result in results) == 20  # each chunk taken by exactly one of the two runs
    assert_rollups_match_the_ledger()


def _ledger_lock_awaited() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
            [UsageRecord._meta.db_table],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.usefixtures("postgres")
def test_a_row_whose_insert_commits_after_a_later_ones_is_still_counted():
    keys = _keys()
    make_ledger(keys=keys, rows=20, start=START, hours=2)
    inserted, release, results = threading.Event(), threading.Event(), []

    def slow_insert() -> int:
        with transaction.atomic():
            row = make_ledger(keys=keys, rows=1, start=START, hours=1, seed=5, model="slow")[0]
            inserted.set()
            release.wait(timeout=10)
        return row.pk

    writer = _in_thread(slow_insert, results)
    assert inserted.wait(timeout=10)
    later = make_ledger(keys=keys, rows=1, start=START, hours=1, seed=6, model="later")[0]
    runner = _in_thread(usage_rollups_update, results)
    deadline = time.monotonic() + 5
    while not _ledger_lock_awaited() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    writer.join(timeout=10)
    runner.join(timeout=30)

    slow_id, run = results
    assert slow_id < later.pk
    assert run.last_id == later.pk
    assert HourlyUsageRollup.objects.filter(model="slow").get().requests == 1
    assert_rollups_match_the_ledger()
