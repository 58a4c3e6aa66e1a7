"""The usage ledger's monthly partitions on PostgreSQL: made ahead of time, and old ones archived and dropped.

    ledger_partitions()            the ledger's partitions, by month, the default one last ([] when not partitioned)
    ledger_partitions_ensure()     a partition for this month and each of the next `ahead`; the names made
    ledger_partitions_prune()      the partitions of months before the kept ones, archived if asked, then dropped
    ledger_partitions_maintain()   both, as the settings say: the periodic job (billing/tasks.py)

Migration 0007 made the ledger a table partitioned by range of `created_at`,
one partition per UTC month (`billing_usagerecord_p2026_09`), and a default
partition taking any row no month partition covers, so an insert never fails
for want of one. A month's partition is made as its table on its own, then
attached: rows of that month the default partition caught (a clock far
ahead, a month nobody made in time) are moved into it first, since the
database refuses to attach a range the default partition holds rows of.

Pruning keeps this month and the `keep_months` before it. An older month's
partition is detached, in a transaction of its own as it locks the whole
ledger for that moment (from then on a late row of that month lands in the
default partition); then written out as gzip CSV if an archive directory is
given (the file is complete on disk before the drop commits) and dropped. A
month detached by a prune that stopped there is found and finished by the next. Default-partition rows older than
the kept months go the same way. Rollups keep their sums: they never read old rows again.

Runs take turns on a transaction lock, and wait at most LOCK_TIMEOUT_MS for
the ledger's locks (a long report holds them), then fail and are retried.
On SQLite there are no partitions and every function does nothing.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import UsageRecord

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 5000
TABLE = UsageRecord._meta.db_table
DEFAULT = f"{TABLE}_default"
_MONTHLY = re.compile(rf"^{TABLE}_p(\d{{4}})_(\d{{2}})$")
_TURN = "SELECT pg_advisory_xact_lock(hashtext('portico.ledger.partitions'))"
_COLUMNS = ", ".join(field.column for field in UsageRecord._meta.concrete_fields if field.column)


@dataclass(frozen=True)
class Partition:
    name: str
    month: datetime | None  # the month's first instant (UTC); None for the default partition
    rows: int  # the planner's estimate (-1: never counted), exact for the default partition


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_p{month:%Y_%m}"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [TABLE])
        return cursor.fetchone() is not None


def ledger_partitions() -> list[Partition]:
    if not is_partitioned():
        return []
    with connection.cursor() as cursor:
        return _partitions(cursor)


def _partitions(cursor: Any) -> list[Partition]:
    cursor.execute(
        "SELECT c.relname, c.reltuples::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        [TABLE],
    )
    monthly, others = [], []
    for name, rows in cursor.fetchall():
        found = _MONTHLY.match(name)
        if found:
            monthly.append(Partition(name, datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC), rows))
        elif name == DEFAULT:
            cursor.execute(f"SELECT COUNT(*) FROM {DEFAULT}")  # noqa: S608 - our own table; it is kept small
            others.append(Partition(name, None, cursor.fetchone()[0]))
    return monthly + others


def ledger_partitions_ensure(*, now: datetime | None = None, ahead: int) -> list[str]:
    """Make the partitions of this month and the next `ahead` months that do not exist yet (and the default one)."""
    if not is_partitioned():
        return []
    first = month_start(now or timezone.now())
    made = []
    with transaction.atomic(), connection.cursor() as cursor:
        _take_turn(cursor)
        existing = _partitions(cursor)
        months = {partition.month for partition in existing}
        if None not in months:
            cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")
            made.append(DEFAULT)
        for offset in range(ahead + 1):
            month = add_months(first, offset)
            if month not in months:
                _make(cursor, month, default=None in months)
                made.append(partition_name(month))
    if made:
        logger.info("ledger partitions made: %s", ", ".join(made))
    return made


def _take_turn(cursor: Any) -> None:
    cursor.execute(_TURN)
    cursor.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")


def _make(cursor: Any, month: datetime, *, default: bool) -> None:
    name, end = partition_name(month), add_months(month, 1)
    cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    if default:
        # No row of the month may reach the default partition between the move and the attach, which would refuse.
        cursor.execute(f"LOCK TABLE {DEFAULT} IN EXCLUSIVE MODE")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} "  # noqa: S608 - our own tables
            f"WHERE created_at >= %s AND created_at < %s RETURNING {_COLUMNS}) "
            f"INSERT INTO {name} ({_COLUMNS}) SELECT {_COLUMNS} FROM moved",
            [month, end],
        )
        if cursor.rowcount:
            logger.warning("%d ledger row(s) of %s moved from the default partition", cursor.rowcount, f"{month:%Y-%m}")
    # Bounds are our own datetimes, written out: DDL takes no parameters.
    cursor.execute(
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{month.isoformat()}') TO ('{end.isoformat()}')"
    )


@dataclass(frozen=True)
class Pruned:
    name: str  # the partition, or the default partition for its rows older than the kept months
    month: datetime | None
    archive: Path | None  # where its rows were (or, in a dry run, would be) written


def ledger_partitions_prune(
    *, now: datetime | None = None, keep_months: int, archive_dir: Path | None = None, dry_run: bool = False
) -> list[Pruned]:
    """Drop the partitions of months before this one and the `keep_months` before it; `keep_months` 0 keeps all."""
    if keep_months <= 0 or not is_partitioned():
        return []
    now = now or timezone.now()
    cutoff = add_months(month_start(now), -keep_months)
    partitions = ledger_partitions()
    old = [p for p in partitions if p.month is not None and p.month < cutoff]
    pruned = [Pruned(p.name, p.month, _archive_path(archive_dir, p.name)) for p in old]
    left = [Pruned(name, month, _archive_path(archive_dir, name)) for name, month in _detached() if month < cutoff]
    stale = Pruned(DEFAULT, None, _archive_path(archive_dir, f"{DEFAULT}_{now:%Y%m%dT%H%M%S}"))
    stale_rows = any(p.month is None for p in partitions) and _default_holds_before(cutoff)
    if dry_run:
        return pruned + left + ([stale] if stale_rows else [])
    for partition in pruned:
        _detach(partition.name)
    for partition in pruned + left:
        _drop(partition)
    if stale_rows:
        _prune_default(stale, cutoff)
    return pruned + left + ([stale] if stale_rows else [])


def _archive_path(directory: Path | None, name: str) -> Path | None:
    return directory / f"{name}.csv.gz" if directory is not None else None


def _detached() -> list[tuple[str, datetime]]:
    """Month tables a prune detached but did not drop (it stopped in between): no longer partitions, still ours."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname LIKE %s"
            " AND relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = %s::regclass)",
            [f"{TABLE}\\_p%", TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = [(name, _MONTHLY.match(name)) for name in names]
    return [(name, datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)) for name, m in found if m]


def _detach(name: str) -> None:
    """Detach in a transaction of its own: it locks the whole ledger, so only for a moment."""
    with transaction.atomic(), connection.cursor() as cursor:
        _take_turn(cursor)
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")


def _drop(partition: Pruned) -> None:
    """Archive (if asked) and drop a detached month: nothing writes to it any more, and nothing waits on it."""
    with transaction.atomic(), connection.cursor() as cursor:
        _take_turn(cursor)
        if partition.archive is not None:
            _archive(cursor, f"COPY {partition.name} TO STDOUT WITH (FORMAT csv, HEADER true)", partition.archive)
        cursor.execute(f"DROP TABLE {partition.name}")
    archived = f", archived to {partition.archive}" if partition.archive else ""
    logger.info("ledger partition %s dropped%s", partition.name, archived)


def _default_holds_before(cutoff: datetime) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE created_at < %s)", [cutoff])  # noqa: S608
        return bool(cursor.fetchone()[0])


def _prune_default(pruned: Pruned, cutoff: datetime) -> None:
    """Delete (and archive) the default partition's rows from before `cutoff`."""
    with transaction.atomic(), connection.cursor() as cursor:
        _take_turn(cursor)
        if pruned.archive is None:
            cursor.execute(f"DELETE FROM {DEFAULT} WHERE created_at < %s", [cutoff])  # noqa: S608
        else:
            # The literal is our own datetime: COPY takes no parameters.
            deleted = f"DELETE FROM {DEFAULT} WHERE created_at < '{cutoff.isoformat()}' RETURNING {_COLUMNS}"  # noqa: S608
            _archive(cursor, f"COPY ({deleted}) TO STDOUT WITH (FORMAT csv, HEADER true)", pruned.archive)
    logger.info("ledger rows before %s deleted from the default partition", f"{cutoff:%Y-%m}")


def _archive(cursor: Any, copy: str, path: Path) -> None:
    """Write COPY's output gzipped to `path`, complete and on disk before returning (or no file at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    try:
        with open(partial, "wb") as raw:
            with (
                gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=raw) as out,
                cursor.copy(copy) as rows,
            ):
                for block in rows:
                    out.write(block)
            raw.flush()
            os.fsync(raw.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class Maintenance:
    made: list[str]
    pruned: list[Pruned]


def ledger_partitions_maintain(*, now: datetime | None = None) -> Maintenance:
    """Partitions made ahead and old ones pruned, as PORTICO_LEDGER_PARTITIONS_AHEAD and _RETENTION_MONTHS say."""
    archive_dir = settings.PORTICO_LEDGER_ARCHIVE_DIR
    return Maintenance(
        made=ledger_partitions_ensure(now=now, ahead=settings.PORTICO_LEDGER_PARTITIONS_AHEAD),
        pruned=ledger_partitions_prune(
            now=now,
            keep_months=settings.PORTICO_LEDGER_RETENTION_MONTHS,
            archive_dir=Path(archive_dir) if archive_dir else None,
        ),
    )
