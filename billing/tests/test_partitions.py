"""The ledger partitioned by month: every row once, in its month, read back by reports across the boundary."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import connection, connections

from billing import ledger
from billing.ledger import LedgerEntry, drain, insert_records
from billing.models import DailyUsageRollup, UsageRecord
from billing.partitions import ledger_partitions_ensure
from billing.reports import tenant_report
from billing.rollups import usage_rollups_update
from billing.selectors import usage_list, usage_totals

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the ledger is partitioned on PostgreSQL")

LAST_INSTANT = datetime(2026, 9, 30, 23, 59, 59, 999000, tzinfo=UTC)  # of September
MIDNIGHT = datetime(2026, 10, 1, tzinfo=UTC)  # October's first
TENANT = 7


def line(request_id: str, at: datetime, **fields: Any) -> bytes:
    """A spooled ledger line, as billing.metering appends it."""
    row = LedgerEntry(
        request_id=request_id,
        client_request_id="",
        created_at=at.timestamp(),
        tenant_id=TENANT,
        api_key_id=11,
        key_prefix="pk-ab12",
        operation="chat",
        model="gpt-4o",
        provider="openai",
        upstream_model="gpt-4o",
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        reasoning_tokens=0,
        tokens_estimated=False,
        cost=Decimal("0.0100000000"),
        latency_ms=300,
        first_token_ms=None,
        status=200,
        error_type="",
        streamed=False,
        client_disconnected=False,
    ).row()
    return orjson.dumps({**row, **fields})


def spooled(directory: Path, name: str, lines: list[bytes]) -> None:
    (directory / f"host-1-{name}-1.ready").write_bytes(b"".join(item + b"\n" for item in lines))


def partition_of(request_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM billing_usagerecord WHERE request_id = %s", [request_id])
        [(name,)] = cursor.fetchall()
    return name


@pytest.fixture
def autumn(db: None) -> None:
    ledger_partitions_ensure(now=datetime(2026, 9, 10, tzinfo=UTC), ahead=1)


def test_rows_either_side_of_midnight_spooled_twice_are_one_row_each_in_their_months(
    autumn: None, tmp_path: Path
) -> None:
    rows = [line("req-sep", LAST_INSTANT), line("req-oct", MIDNIGHT)]
    spooled(tmp_path, "1", rows)
    spooled(tmp_path, "2", rows)  # a file inserted again after a crash between commit and delete

    assert drain(tmp_path) == 4

    stored = dict(UsageRecord.objects.values_list("request_id", "created_at"))
    assert stored == {"req-sep": LAST_INSTANT, "req-oct": MIDNIGHT}
    assert partition_of("req-sep") == "billing_usagerecord_p2026_09"
    assert partition_of("req-oct") == "billing_usagerecord_p2026_10"


def test_a_request_recorded_again_at_another_time_keeps_its_first_row_even_in_another_month(autumn: None) -> None:
    # A queued job run again after its runner died: the same request id, a later arrival, the next month.
    insert_records([line("req-job", LAST_INSTANT, status=200)])
    insert_records([line("req-job", MIDNIGHT, status=500)])

    assert list(UsageRecord.objects.values_list("request_id", "created_at", "status")) == [
        ("req-job", LAST_INSTANT, 200)
    ]


def test_a_batch_holding_one_request_at_two_times_inserts_its_first_line(autumn: None) -> None:
    insert_records([line("req-x", MIDNIGHT, status=201), line("req-y", MIDNIGHT), line("req-x", LAST_INSTANT)])

    assert sorted(UsageRecord.objects.values_list("request_id", "created_at", "status")) == [
        ("req-x", MIDNIGHT, 201),
        ("req-y", MIDNIGHT, 200),
    ]


def test_the_sqlite_paths_check_finds_request_ids_in_any_month(autumn: None) -> None:
    insert_records([line("req-a", LAST_INSTANT)])
    records = [ledger._record(orjson.loads(item)) for item in (line("req-a", MIDNIGHT), line("req-b", MIDNIGHT))]

    assert [record.request_id for record in ledger._unrecorded(records)] == ["req-b"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_inserts_of_one_request_at_two_times_keep_one_row() -> None:
    # Months the migration made: this one and the next. Two processes' drains race for the same request id.
    now = datetime.now(UTC)
    times = [now, datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)]
    ready = threading.Barrier(2)
    failures: list[BaseException] = []

    def insert(at: datetime) -> None:
        try:
            for batch in range(10):
                ready.wait()  # each batch at once with the other thread's
                insert_records([line(f"req-{batch}-{index}", at) for index in range(50)])
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=insert, args=(at,)) for at in times]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert UsageRecord.objects.count() == 500
    assert UsageRecord.objects.values("request_id").distinct().count() == 500


def test_a_far_future_row_lands_in_the_default_partition_and_moves_once_its_month_is_made(db: None) -> None:
    far = datetime(2031, 5, 5, 12, tzinfo=UTC)
    insert_records([line("req-far", far)])
    assert partition_of("req-far") == "billing_usagerecord_default"
    row_id = UsageRecord.objects.get().pk

    made = ledger_partitions_ensure(now=far, ahead=0)

    assert made == ["billing_usagerecord_p2031_05"]
    assert partition_of("req-far") == "billing_usagerecord_p2031_05"
    assert UsageRecord.objects.get().pk == row_id
    insert_records([line("req-far", far)])
    assert UsageRecord.objects.count() == 1


def test_reads_and_reports_span_the_month_boundary(autumn: None) -> None:
    insert_records([line("req-1", LAST_INSTANT), line("req-2", MIDNIGHT), line("req-3", MIDNIGHT, cost="0.5")])

    window = usage_list(start=datetime(2026, 9, 30, tzinfo=UTC), end=datetime(2026, 10, 2, tzinfo=UTC))
    assert [row.request_id for row in window] in (["req-3", "req-2", "req-1"], ["req-2", "req-3", "req-1"])
    assert usage_totals(records=window).cost == Decimal("0.52")
    assert usage_list(end=MIDNIGHT).get().request_id == "req-1"

    run = usage_rollups_update()

    assert run.caught_up
    daily = dict(DailyUsageRollup.objects.values_list("bucket", "requests"))
    assert daily == {datetime(2026, 9, 30, tzinfo=UTC): 1, MIDNIGHT: 2}
    report = tenant_report(tenant_id=TENANT, start=date(2026, 9, 30), end=date(2026, 10, 1), now=MIDNIGHT)
    assert report.totals.requests == 3
    assert report.totals.cost == Decimal("0.52")
    assert [(day.day, day.requests) for day in report.days] == [(date(2026, 9, 30), 1), (date(2026, 10, 1), 2)]


def test_rollups_count_rows_of_every_partition_once(autumn: None) -> None:
    insert_records([line("req-1", LAST_INSTANT)])
    usage_rollups_update()
    insert_records(
        [line("req-2", MIDNIGHT), line("req-1", LAST_INSTANT), line("req-far", datetime(2031, 1, 1, tzinfo=UTC))]
    )

    usage_rollups_update()
    usage_rollups_update()

    assert sorted(DailyUsageRollup.objects.values_list("requests", flat=True)) == [1, 1, 1]
