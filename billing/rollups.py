"""The usage rollups' upkeep: the ledger's new rows added to their hours and days, each row exactly once.

    usage_rollups_update()   add the ledger rows written since the last run to the hourly and daily rollups

The rollups (billing/models.py) sum the ledger per hour and per UTC day, per
tenant, key, public model and deployment (UsageRollup: tenants' reports, the
export), and per public model and deployment alone (DeploymentRollup: the
operators' dashboard, a few rows an hour however many keys there are).

Each run reads the ledger by id, not by time, from the cursor (the one
UsageRollupCursor row: every row up to `last_id` is counted) to a high-water
mark, in chunks of CHUNK_IDS ids. A chunk is one transaction: it locks the
cursor row, adds the chunk's sums to the rollups (one INSERT … SELECT … GROUP
BY … ON CONFLICT DO UPDATE per table, adding to the sums already there) and
moves the cursor. So:

* a late row (a spool flushed after an outage, its `created_at` hours old)
  has a new id: the next run adds it to its old hour and day;
* a second run, at once or later, finds the cursor moved past what the first
  counted: runs take turns on the cursor row's lock (on SQLite, which has no
  row locks, the chunk's first statement is a write, which takes the
  database's one write lock), so nothing is counted twice;
* a run stopped mid-chunk (a time limit, a lost connection) rolls the chunk
  back, cursor included.

The high-water mark is the greatest id below which no row can still appear.
On PostgreSQL ids are taken from a sequence as rows are inserted but become
visible when their transaction commits, so a batch holding id 100 may commit
after one holding id 101; a cursor moved to 101 would skip it for ever. A run
therefore takes the ledger table in SHARE mode for the moment it reads
MAX(id): that waits for the inserts in flight to commit and holds new ones
back (ledger inserts are one statement each, off the request path); any
later insert takes a greater id. It waits at most LOCK_TIMEOUT_MS, then the
run fails and is retried. This needs the sequence's CACHE to be 1 (Django's
default). On SQLite writers take turns and ids are given at insert, so
MAX(id) is the mark already.

Rows are summed by the database; nothing here loops over ledger rows, and a
rollup is never recomputed from the ledger, so rollups keep their sums when
old ledger rows are deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db import NotSupportedError, connection, transaction
from django.db.models import Min, Model
from django.utils import timezone

from billing.histograms import BOUNDS_MS, bucket_columns
from billing.models import (
    DEPLOYMENT_ROLLUP_GROUP,
    ROLLUP_GROUP,
    DailyDeploymentRollup,
    DailyUsageRollup,
    DeploymentPrice,
    HourlyDeploymentRollup,
    HourlyUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupCursor,
)

logger = logging.getLogger(__name__)

# Ledger ids per chunk: one chunk's transaction stays in the seconds on a busy PostgreSQL.
CHUNK_IDS = 100_000
# A run stops taking chunks after this long; the next run (or the task, queueing itself again) goes on.
RUN_SECONDS = 20.0
LOCK_TIMEOUT_MS = 5000
CURSOR_ID = 1

_LEDGER = UsageRecord._meta.db_table

# The start of the row's hour and UTC day. Postgres: `created_at` is a timestamptz. SQLite: Django stores UTC
# times as text, "2026-11-15 12:34:56.789", which strftime reads (`%` is doubled for the parameter style).
_BUCKETS = {
    "postgresql": {
        "hour": "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "day": "date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    },
    "sqlite": {
        "hour": "strftime('%%Y-%%m-%%d %%H:00:00', created_at)",
        "day": "strftime('%%Y-%%m-%%d 00:00:00', created_at)",
    },
}

# Error classes, from the status the client got (see UsageRollup): one class per failed row.
_BY_PROVIDER = "(error_type LIKE 'upstream%%' OR error_type = 'no_deployment_available')"
_ERROR_CLASSES = {
    "errors_timeout": "status IN (408, 504)",
    "errors_rate_limited": "status = 429",
    "errors_client": "status >= 400 AND status < 500 AND status NOT IN (408, 429)",
    "errors_upstream": f"status >= 500 AND status <> 504 AND {_BY_PROVIDER}",
    "errors_other": f"status >= 500 AND status <> 504 AND NOT {_BY_PROVIDER}",
}


def _count_if(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _histogram(prefix: str, column: str, *, only: str) -> dict[str, str]:
    """Each bucket's count of rows meeting `only`, by `column`'s value (billing/histograms.py)."""
    sums = {}
    for index, name in enumerate(bucket_columns(prefix)):
        lower = BOUNDS_MS[index - 1] if index > 0 else None
        upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else None
        tests = [only]
        tests += [f"{column} > {lower}"] if lower is not None else []
        tests += [f"{column} <= {upper}"] if upper is not None else []
        sums[name] = _count_if(" AND ".join(tests))
    return sums


# Rollup column: what it is in the ledger. The group's ids are 0 for none, so they can be part of the unique key.
_DEPLOYMENT = {"model": "model", "provider": "provider", "deployment_id": "COALESCE(deployment_id, 0)"}
_TENANT_KEY = {"tenant_id": "COALESCE(tenant_id, 0)", "api_key_id": "COALESCE(api_key_id, 0)"}
# Labels of the group's ids, kept as the newest row gave them.
_DEPLOYMENT_LABEL = {"deployment": "MAX(deployment)"}
_KEY_LABEL = {"key_prefix": "MAX(key_prefix)"}
# A row's provider cost is known if it is not 0, or if its deployment had a provider cost in effect when the
# request arrived: 0 is then that price (a self-hosted deployment), not a missing one. Metering prices a call
# the same way (billing/metering.py); `_COSTED` gives each deployment the start of its first provider cost.
_COSTED = (
    "LEFT JOIN (SELECT deployment_id AS costed_id, MIN(effective_from) AS costed_from "  # noqa: S608 - constants
    f"FROM {DeploymentPrice._meta.db_table} GROUP BY deployment_id) AS costed ON costed.costed_id = deployment_id"
)
_COST_KNOWN = "provider_cost > 0 OR created_at >= costed_from"
_SUMS = {
    "requests": "COUNT(*)",
    **{name: _count_if(condition) for name, condition in _ERROR_CLASSES.items()},
    "prompt_tokens": "SUM(prompt_tokens)",
    "completion_tokens": "SUM(completion_tokens)",
    "cached_tokens": "SUM(cached_tokens)",
    "reasoning_tokens": "SUM(reasoning_tokens)",
    "cache_creation_tokens": "SUM(cache_creation_tokens)",
    "cost": "SUM(cost)",
    "provider_cost": "SUM(provider_cost)",
    "priced_cost": f"SUM(CASE WHEN {_COST_KNOWN} THEN cost ELSE 0 END)",
    "latency_ms_sum": "SUM(CASE WHEN status < 400 THEN latency_ms ELSE 0 END)",
    "ttft_ms_sum": "COALESCE(SUM(first_token_ms), 0)",
    "ttft_count": "COUNT(first_token_ms)",
    **_histogram("latency", "latency_ms", only="status < 400"),
    **_histogram("ttft", "first_token_ms", only="first_token_ms IS NOT NULL"),
}


def _upsert(rollup: type[Model], bucket: str) -> str:
    """The statement adding the ledger rows with ids in (%s, %s] to `rollup`, bucketed by `bucket`.

    Built from the constants above only; the id range is its one pair of parameters.
    """
    table = rollup._meta.db_table
    per_key = issubclass(rollup, UsageRollup)
    group = {**_TENANT_KEY, **_DEPLOYMENT} if per_key else _DEPLOYMENT
    labels = {**_KEY_LABEL, **_DEPLOYMENT_LABEL} if per_key else _DEPLOYMENT_LABEL
    unique = ROLLUP_GROUP if per_key else DEPLOYMENT_ROLLUP_GROUP
    assert set(unique) == {"bucket", *group}, "the statement's GROUP BY is the rollup's unique key"
    columns = ["bucket", *group, *labels, *_SUMS]
    selected = [bucket, *group.values(), *labels.values(), *_SUMS.values()]
    updates = [f"{name} = excluded.{name}" for name in labels]
    updates += [f"{name} = {table}.{name} + excluded.{name}" for name in _SUMS]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM {_LEDGER} {_COSTED} WHERE id > %s AND id <= %s "
        f"GROUP BY {', '.join([bucket, *group.values()])} "
        f"ON CONFLICT ({', '.join(unique)}) DO UPDATE SET {', '.join(updates)}"
    )


@dataclass(frozen=True)
class RollupRun:
    """What one run did: the ledger ids it added, (`first_id`, `last_id`] (None: none), and whether that was all."""

    first_id: int | None
    last_id: int | None
    chunks: int
    caught_up: bool


def usage_rollups_update(*, seconds: float | None = None, chunk_ids: int | None = None) -> RollupRun:
    """Add every ledger row written since the last run to the rollups, for up to about `seconds` (RUN_SECONDS)."""
    buckets = _BUCKETS.get(connection.vendor)
    if buckets is None:
        raise NotSupportedError(f"usage rollups support PostgreSQL and SQLite, not {connection.vendor}")
    statements = tuple(
        _upsert(rollup, buckets[span])
        for rollup, span in (
            (HourlyUsageRollup, "hour"),
            (DailyUsageRollup, "day"),
            (HourlyDeploymentRollup, "hour"),
            (DailyDeploymentRollup, "day"),
        )
    )
    UsageRollupCursor.objects.get_or_create(pk=CURSOR_ID)
    mark = _ledger_high_water()
    deadline = time.monotonic() + (RUN_SECONDS if seconds is None else seconds)
    chunk_ids = chunk_ids or CHUNK_IDS
    first_id: int | None = None
    last_id: int | None = None
    chunks, caught_up = 0, False
    while not caught_up:
        added = _add_chunk(statements, mark=mark, chunk_ids=chunk_ids)
        if added is None:
            caught_up = True
            break
        first_id = added[0] if first_id is None else first_id
        last_id = added[1]
        chunks += 1
        caught_up = last_id >= mark
        if time.monotonic() >= deadline:
            break
    if chunks:
        logger.info("usage rollups: ledger ids %d to %d added in %d chunk(s)", first_id, last_id, chunks)
    return RollupRun(first_id=first_id, last_id=last_id, chunks=chunks, caught_up=caught_up)


def _ledger_high_water() -> int:
    """The greatest ledger id at or below which every row that will ever exist is visible now."""
    table = connection.ops.quote_name(_LEDGER)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608 - our own table
        row = cursor.fetchone()
    return int(row[0])


def _add_chunk(statements: tuple[str, ...], *, mark: int, chunk_ids: int) -> tuple[int, int] | None:
    """Add the next chunk of ids up to `mark`, and move the cursor past it; its ids (low, high], None if none."""
    with transaction.atomic():
        cursor_row = _locked_cursor()
        low = cursor_row.last_id
        # Ids the sequence skipped (rolled back, or duplicates the ledger refused) are not walked through.
        first = UsageRecord.objects.filter(pk__gt=low, pk__lte=mark).aggregate(first=Min("pk"))["first"]
        if first is None:
            return None
        high = min(first - 1 + chunk_ids, mark)
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement, [low, high])
        cursor_row.last_id = high
        cursor_row.updated_at = timezone.now()
        cursor_row.save(update_fields=["last_id", "updated_at"])
    return low, high


def _locked_cursor() -> UsageRollupCursor:
    """The cursor row, locked until the transaction ends: rollup runs take turns."""
    if connection.vendor == "sqlite":
        # No row locks in SQLite: a write first takes its one write lock before the cursor is read.
        UsageRollupCursor.objects.filter(pk=CURSOR_ID).update(updated_at=timezone.now())
    return UsageRollupCursor.objects.select_for_update().get(pk=CURSOR_ID)
