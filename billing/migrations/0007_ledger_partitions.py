"""The usage ledger partitioned by month on PostgreSQL; SQLite keeps its plain table.

PostgreSQL requires every unique constraint of a partitioned table, its primary
key included, to hold the partition key (`created_at`). So:

* `request_id` alone is no longer unique; (request_id, created_at) is, on both
  databases. A spooled row carries the time its request arrived, the same
  however often it is spooled, so the spool's duplicates still collide; the
  ledger's insert (billing/ledger.py) keeps one row per request id even when
  two rows of one request carry different times (a run recovered after a crash).
* The primary key in the database is (id, created_at), while the model keeps
  `id` as its primary key. Django 5.2's CompositePrimaryKey would make `pk` a
  tuple: the admin does not support it, and the rollups' cursor, the reports'
  links and every `pk=` lookup read one id. `id` stays unique without a
  constraint: it comes from one sequence, which never hands out a number twice.
  That sequence replaces the identity column, which partitioned tables do not
  have before PostgreSQL 17; it continues the identity's numbering (CACHE 1,
  as the rollups need).

The conversion runs in the migration's transaction: it renames the table away,
creates the partitioned one under the ledger's name with a partition per month
that holds rows, this month and the next two (billing.partitions creates later
ones, the periodic job keeps them ahead) and a default partition catching any
other time, copies the rows, drops the old table, and recreates its unique
constraints and indexes under their names, so later migrations find what they
expect. The ledger is locked meanwhile: spooled rows wait in the spool.
"""

from datetime import UTC, datetime
from typing import Any

from django.db import migrations, models

TABLE = "billing_usagerecord"
PLAIN = "billing_usagerecord_unpartitioned"
SEQUENCE = "billing_usagerecord_id_seq"
MONTHS_AHEAD = 2


def _month(year: int, month: int) -> datetime:
    """The first instant of a month, with months past December carried into later years."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def _run(cursor: Any, *statements: str) -> None:
    for statement in statements:
        cursor.execute(statement)


def _definitions(cursor: Any, table: str) -> tuple[str, list[tuple[str, str]], list[str]]:
    """The table's primary key name, unique constraints (name, definition), and other indexes (CREATE INDEX …)."""
    cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [table])
    [(primary,)] = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'u' ORDER BY conname",
        [table],
    )
    uniques = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY c.relname",
        [table],
    )
    return primary, uniques, [row[0] for row in cursor.fetchall()]


def _last_id(cursor: Any, table: str) -> int:
    """The greatest id handed out so far: ids are never given twice, even those of rows gone since."""
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608 - our own table
    [(greatest,)] = cursor.fetchall()
    cursor.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id'))", [table])
    [(last,)] = cursor.fetchall()
    return max(greatest, last or 0)


def partition(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        primary, uniques, indexes = _definitions(cursor, TABLE)
        _run(
            cursor,
            f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE",
            f"ALTER TABLE {TABLE} RENAME TO {PLAIN}",
            f"CREATE TABLE {TABLE} (LIKE {PLAIN} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            " PARTITION BY RANGE (created_at)",
            f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT",
        )
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC') FROM {PLAIN}"  # noqa: S608
        )
        months = {_month(row[0].year, row[0].month) for row in cursor.fetchall()}
        now = datetime.now(UTC)
        months |= {_month(now.year, now.month + ahead) for ahead in range(MONTHS_AHEAD + 1)}
        for start in sorted(months):
            end = _month(start.year, start.month + 1)
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{start:%Y_%m} PARTITION OF {TABLE}"
                f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        last_id = _last_id(cursor, PLAIN)
        # Columns in the same order: LIKE copies them so.
        _run(cursor, f"INSERT INTO {TABLE} SELECT * FROM {PLAIN}", f"DROP TABLE {PLAIN}")  # noqa: S608
        _run(
            cursor,
            f"CREATE SEQUENCE {SEQUENCE} OWNED BY {TABLE}.id",
            f"SELECT setval('{SEQUENCE}', {max(last_id, 1)}, {last_id > 0})",
            f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{SEQUENCE}')",
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {primary} PRIMARY KEY (id, created_at)",
            *(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}" for name, definition in uniques),
            *indexes,
            f"ANALYZE {TABLE}",
        )


def unpartition(apps: Any, schema_editor: Any) -> None:
    """Back to one plain table, its rows, ids and constraints kept (the operations before then restore the rest)."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        primary, uniques, indexes = _definitions(cursor, TABLE)
        last_id = _last_id(cursor, TABLE)
        _run(
            cursor,
            f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE",
            f"ALTER TABLE {TABLE} RENAME TO {PLAIN}",
            f"ALTER TABLE {PLAIN} ALTER COLUMN id DROP DEFAULT",
            f"CREATE TABLE {TABLE} (LIKE {PLAIN} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            f"INSERT INTO {TABLE} SELECT * FROM {PLAIN}",  # noqa: S608
            f"DROP TABLE {PLAIN}",  # its partitions and sequence with it
            f"ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (RESTART {last_id + 1})",
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {primary} PRIMARY KEY (id)",
            *(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}" for name, definition in uniques),
            *indexes,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0006_ledger_upstream_id_overhead"),
    ]

    operations = [
        migrations.AlterField(
            model_name="usagerecord",
            name="request_id",
            field=models.CharField(max_length=64),
        ),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.UniqueConstraint(fields=("request_id", "created_at"), name="usage_request_once"),
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
