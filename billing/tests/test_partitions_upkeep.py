"""The ledger's partitions kept: months made ahead, old months archived and dropped, by the job and the command."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from billing import tasks
from billing.ledger import insert_records
from billing.models import UsageRecord
from billing.partitions import ledger_partitions, ledger_partitions_ensure, ledger_partitions_prune
from billing.tests.test_partitions import line

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the ledger is partitioned on PostgreSQL")

NOW = datetime(2029, 3, 15, 8, tzinfo=UTC)


def months() -> list[str]:
    return [f"{p.month:%Y-%m}" if p.month else "default" for p in ledger_partitions()]


def stored() -> list[str]:
    return sorted(UsageRecord.objects.values_list("request_id", flat=True))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("ledger_partitions", *args, stdout=out)
    return out.getvalue()


def archived(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", newline="") as rows:
        return list(csv.DictReader(rows))


@pytest.fixture
def bare(db: None) -> None:
    """No month partitions at all (those the migration made for today are dropped until the test ends)."""
    with connection.cursor() as cursor:
        for partition in ledger_partitions():
            if partition.month is not None:
                cursor.execute(f"DROP TABLE {partition.name}")


@pytest.fixture
def winter(bare: None) -> None:
    """Partitions from November 2028 to May 2029, a row in each of November, January and March."""
    ledger_partitions_ensure(now=datetime(2028, 11, 2, tzinfo=UTC), ahead=6)
    insert_records(
        [
            line("req-nov", datetime(2028, 11, 30, 23, 59, 59, tzinfo=UTC)),
            line("req-jan", datetime(2029, 1, 1, tzinfo=UTC)),
            line("req-mar", datetime(2029, 3, 1, tzinfo=UTC)),
        ]
    )


def test_ensuring_makes_this_month_and_the_months_ahead_once(bare: None) -> None:
    made = ledger_partitions_ensure(now=NOW, ahead=2)

    assert made == [f"billing_usagerecord_p2029_0{month}" for month in (3, 4, 5)]
    assert months() == ["2029-03", "2029-04", "2029-05", "default"]
    assert ledger_partitions_ensure(now=NOW, ahead=2) == []


def test_a_partition_made_later_has_the_ledgers_indexes_and_constraints(bare: None) -> None:
    ledger_partitions_ensure(now=NOW, ahead=0)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'billing_usagerecord_p2029_03'::regclass"
        )
        indexes = " ".join(row[0] for row in cursor.fetchall())
    for columns in ("(id, created_at)", "(request_id, created_at)", "(tenant_id, created_at)", "(batch_id)"):
        assert columns in indexes
    insert_records([line("req-1", NOW), line("req-1", NOW)])
    assert stored() == ["req-1"]


def test_a_missing_default_partition_is_made_again(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE billing_usagerecord_default")

    assert "billing_usagerecord_default" in ledger_partitions_ensure(now=NOW, ahead=0)
    insert_records([line("req-far", datetime(2040, 1, 1, tzinfo=UTC))])
    assert stored() == ["req-far"]


def test_a_dry_run_names_the_months_it_would_drop_and_drops_nothing(winter: None) -> None:
    pruned = ledger_partitions_prune(now=NOW, keep_months=2, dry_run=True)

    assert [item.name for item in pruned] == ["billing_usagerecord_p2028_11", "billing_usagerecord_p2028_12"]
    assert stored() == ["req-jan", "req-mar", "req-nov"]
    assert "2028-11" in months()


def test_pruning_drops_the_months_before_the_kept_ones(winter: None) -> None:
    ledger_partitions_prune(now=NOW, keep_months=2)

    assert stored() == ["req-jan", "req-mar"]
    assert "2028-11" not in months()
    assert "2028-12" not in months()
    assert "2029-01" in months()


def test_retention_of_0_keeps_every_month(winter: None) -> None:
    assert ledger_partitions_prune(now=NOW, keep_months=0) == []
    assert stored() == ["req-jan", "req-mar", "req-nov"]


def test_pruning_with_an_archive_directory_writes_each_month_as_gzip_csv_first(winter: None, tmp_path: Path) -> None:
    ledger_partitions_prune(now=NOW, keep_months=2, archive_dir=tmp_path)

    rows = archived(tmp_path / "billing_usagerecord_p2028_11.csv.gz")
    assert [row["request_id"] for row in rows] == ["req-nov"]
    assert rows[0]["created_at"].startswith("2028-11-30 23:59:59")
    assert rows[0]["cost"] == "0.0100000000"
    assert archived(tmp_path / "billing_usagerecord_p2028_12.csv.gz") == []
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "billing_usagerecord_p2028_11.csv.gz",
        "billing_usagerecord_p2028_12.csv.gz",
    ]


def test_a_month_a_stopped_prune_left_detached_is_archived_and_dropped_by_the_next(
    winter: None, tmp_path: Path
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE billing_usagerecord DETACH PARTITION billing_usagerecord_p2028_11")

    pruned = ledger_partitions_prune(now=NOW, keep_months=2, archive_dir=tmp_path)

    assert "billing_usagerecord_p2028_11" in [item.name for item in pruned]
    assert [row["request_id"] for row in archived(tmp_path / "billing_usagerecord_p2028_11.csv.gz")] == ["req-nov"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('billing_usagerecord_p2028_11')")
        assert cursor.fetchone() == (None,)


def test_a_late_row_of_a_dropped_month_is_kept_until_the_next_prune_archives_it(winter: None, tmp_path: Path) -> None:
    ledger_partitions_prune(now=NOW, keep_months=2)
    insert_records([line("req-late", datetime(2028, 12, 24, tzinfo=UTC))])  # a spool flushed after a long outage
    assert "req-late" in stored()

    pruned = ledger_partitions_prune(now=NOW, keep_months=2, archive_dir=tmp_path)

    assert [item.name for item in pruned] == ["billing_usagerecord_default"]
    assert "req-late" not in stored()
    [archive] = tmp_path.iterdir()
    assert [row["request_id"] for row in archived(archive)] == ["req-late"]


def test_the_periodic_job_makes_and_prunes_as_the_settings_say(
    winter: None, settings: Any, tmp_path: Path, time_machine: Any
) -> None:
    settings.PORTICO_LEDGER_PARTITIONS_AHEAD = 3
    settings.PORTICO_LEDGER_RETENTION_MONTHS = 3
    settings.PORTICO_LEDGER_ARCHIVE_DIR = str(tmp_path)
    time_machine.move_to(NOW)

    tasks.ledger_partitions_maintain()

    assert "2029-06" in months()
    assert "2028-11" not in months()
    assert "2028-12" in months()
    assert [path.name for path in tmp_path.iterdir()] == ["billing_usagerecord_p2028_11.csv.gz"]


def test_the_command_shows_ensures_and_prunes(winter: None, settings: Any, time_machine: Any, tmp_path: Path) -> None:
    settings.PORTICO_LEDGER_RETENTION_MONTHS = 0
    time_machine.move_to(NOW)

    shown = run("show")
    assert "2028-11   billing_usagerecord_p2028_11" in shown
    assert "default   billing_usagerecord_default" in shown
    assert run("ensure", "--ahead", "3") == "Made: billing_usagerecord_p2029_06.\n"
    assert run("ensure", "--ahead", "3") == "Every partition was there already.\n"
    assert run("prune") == "Retention is 0 months: every partition is kept.\n"
    assert run("prune", "--keep-months", "2", "--dry-run", "--archive-dir", str(tmp_path)) == "".join(
        f"Would drop billing_usagerecord_{month} ({month[1:5]}-{month[6:]}), to be archived to"
        f" {tmp_path}/billing_usagerecord_{month}.csv.gz\n"
        for month in ("p2028_11", "p2028_12")
    )
    assert stored() == ["req-jan", "req-mar", "req-nov"]
    assert list(tmp_path.iterdir()) == []
    assert run("prune", "--keep-months", "2") == (
        "Dropped billing_usagerecord_p2028_11 (2028-11)\nDropped billing_usagerecord_p2028_12 (2028-12)\n"
    )
    assert stored() == ["req-jan", "req-mar"]
