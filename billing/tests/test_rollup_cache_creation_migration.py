"""Migration 0008: the rollups gain `cache_creation_tokens`, counted once for the ledger rows already rolled up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.models import DailyDeploymentRollup, HourlyUsageRollup, UsageRecord
from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import expected_rollups, make_ledger

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("billing", "0007_ledger_partitions")
START = datetime(2026, 11, 10, tzinfo=UTC)


def migrate(*targets: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets) or executor.loader.graph.leaf_nodes())


def _held(model, *, per_key: bool) -> dict:
    group = ("bucket", "tenant_id", "api_key_id") if per_key else ("bucket",)
    return {
        (*(row[name] for name in group), row["model"], row["provider"], row["deployment_id"]): row[
            "cache_creation_tokens"
        ]
        for row in model.objects.values(*group, "model", "provider", "deployment_id", "cache_creation_tokens")
    }


def _expected(records, *, daily: bool, per_key: bool) -> dict:
    return {
        key: group.sums["cache_creation_tokens"]
        for key, group in expected_rollups(records, daily=daily, per_key=per_key).items()
    }


def test_the_rows_rolled_up_before_it_are_counted_once_and_later_rows_by_the_next_run(owner, outsider):
    rolled = make_ledger(keys=[owner.api_key, outsider.api_key], rows=200, start=START, hours=48)
    assert usage_rollups_update().caught_up
    assert sum(record.cache_creation_tokens for record in rolled) > 0
    migrate(BEFORE)  # the rollups as the previous release left them: no such column
    try:
        late = make_ledger(keys=[owner.api_key], rows=20, start=START, hours=48, seed=9)
        migrate()

        # Counted once for what the cursor had passed; the late rows wait for the next run.
        assert _held(HourlyUsageRollup, per_key=True) == _expected(rolled, daily=False, per_key=True)
        assert _held(DailyDeploymentRollup, per_key=False) == _expected(rolled, daily=True, per_key=False)

        assert usage_rollups_update().caught_up
        everything = list(UsageRecord.objects.all())
        assert len(everything) == len(rolled) + len(late)
        assert _held(HourlyUsageRollup, per_key=True) == _expected(everything, daily=False, per_key=True)
        assert _held(DailyDeploymentRollup, per_key=False) == _expected(everything, daily=True, per_key=False)
    finally:
        migrate()
