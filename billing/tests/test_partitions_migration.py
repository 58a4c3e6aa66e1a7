"""Migration 0007 on a ledger holding rows of several months: every row into its month, ids and indexes kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the ledger is partitioned on PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

BEFORE = ("billing", "0006_ledger_upstream_id_overhead")
TIMES = {
    "req-jan": datetime(2024, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
    "req-feb": datetime(2024, 2, 1, tzinfo=UTC),
    "req-feb-2": datetime(2024, 2, 29, 12, tzinfo=UTC),
    "req-jul": datetime(2024, 7, 4, tzinfo=UTC),
}


def migrate(*targets: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets) or executor.loader.graph.leaf_nodes())


def query(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def index_names() -> set[str]:
    return {name for (name,) in query("SELECT indexname FROM pg_indexes WHERE tablename = 'billing_usagerecord'")}


@pytest.fixture
def unpartitioned() -> Iterator[None]:
    """The ledger as migration 0006 left it, with rows in three months; the latest migrations again afterwards."""
    migrate(BEFORE)
    try:
        for request_id, at in TIMES.items():
            query(
                "INSERT INTO billing_usagerecord (request_id, client_request_id, created_at, key_prefix, operation,"
                " model, provider, upstream_model, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,"
                " tokens_estimated, cost, latency_ms, status, error_type, streamed, client_disconnected)"
                " VALUES (%s, '', %s, '', 'chat', 'gpt-4o', '', '', 1, 1, 0, 0, false, 0.25, 10, 200, '', false, false)"
                " RETURNING id",
                [request_id, at],
            )
        query("DELETE FROM billing_usagerecord WHERE request_id = 'req-jul'")  # its id is not to be given again
        yield
    finally:
        migrate()


def test_the_migration_moves_every_row_into_its_months_partition(unpartitioned: None) -> None:
    ids: dict[str, int] = dict(query("SELECT request_id, id FROM billing_usagerecord"))
    indexes = index_names()

    migrate()

    rows = query("SELECT request_id, id, created_at, tableoid::regclass::text FROM billing_usagerecord ORDER BY id")
    assert rows == [
        ("req-jan", ids["req-jan"], TIMES["req-jan"], "billing_usagerecord_p2024_01"),
        ("req-feb", ids["req-feb"], TIMES["req-feb"], "billing_usagerecord_p2024_02"),
        ("req-feb-2", ids["req-feb-2"], TIMES["req-feb-2"], "billing_usagerecord_p2024_02"),
    ]
    partitions = {name for (name,) in query("SELECT inhrelid::regclass::text FROM pg_inherits")}
    assert {"billing_usagerecord_default", "billing_usagerecord_p2024_01", "billing_usagerecord_p2024_02"} <= partitions
    now = datetime.now(UTC)
    assert f"billing_usagerecord_p{now:%Y_%m}" in partitions
    assert "billing_usagerecord_p2024_07" not in partitions  # its one row was deleted
    # The same indexes by name, but the request id's own ones: its uniqueness now holds the arrival time.
    assert index_names() == (indexes - {name for name in indexes if "request_id" in name}) | {"usage_request_once"}
    [(primary,)] = query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'billing_usagerecord'::regclass"
        " AND contype = 'p'"
    )
    assert primary == "PRIMARY KEY (id, created_at)"
    [(next_id,)] = query(
        "INSERT INTO billing_usagerecord (request_id, client_request_id, created_at, key_prefix, operation,"
        " model, provider, upstream_model, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,"
        " tokens_estimated, cost, latency_ms, status, error_type, streamed, client_disconnected)"
        " VALUES ('req-new', '', now(), '', 'chat', 'gpt-4o', '', '', 1, 1, 0, 0, false, 0, 10, 200, '', false, false)"
        " RETURNING id"
    )
    assert next_id == max(ids.values()) + 2  # req-jul's id, though its row was deleted, is not given again


def test_the_migration_reversed_gives_back_one_table_with_every_row(unpartitioned: None) -> None:
    before = query("SELECT request_id, id, created_at FROM billing_usagerecord ORDER BY id")
    migrate()

    migrate(BEFORE)

    assert query("SELECT request_id, id, created_at FROM billing_usagerecord ORDER BY id") == before
    assert query("SELECT relkind FROM pg_class WHERE relname = 'billing_usagerecord'") == [("r",)]
    assert query("SELECT COUNT(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'billing\\_usagerecord\\_%%'") == [
        (0,)
    ]
    [(unique,)] = query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'billing_usagerecord'::regclass"
        " AND contype = 'u'"
    )
    assert unique == "UNIQUE (request_id)"
