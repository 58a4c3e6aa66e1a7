"""The rollups' totals under a ledger retention count only the months the ledger still holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from billing.models import DailyUsageRollup, UsageRecord
from billing.partitions import ledger_partitions_maintain
from billing.rollups import usage_rollups_update
from billing.selectors import rolled_usage_sums
from billing.tests.factories import make_usage
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the ledger is partitioned on PostgreSQL")

NOW = datetime(2029, 3, 15, 8, tzinfo=UTC)
# Two months kept before March 2029: the ledger holds January 2029 onwards.
FIRST_KEPT = datetime(2029, 1, 1, tzinfo=UTC)


@pytest.fixture
def pruned(owner: IssuedKey, settings: Any, time_machine: Any) -> IssuedKey:
    """A row just before the first kept month, one at its first instant and one today, rolled up, then pruned."""
    settings.PORTICO_LEDGER_RETENTION_MONTHS = 2
    time_machine.move_to(NOW)
    for created_at in (datetime(2028, 12, 31, 23, 59, tzinfo=UTC), FIRST_KEPT, NOW):
        make_usage(api_key=owner.api_key, created_at=created_at)
    usage_rollups_update()
    ledger_partitions_maintain()
    return owner


def test_rollup_rows_of_pruned_months_are_not_counted(pruned: IssuedKey) -> None:
    tenant_id = pruned.api_key.tenant_id
    assert DailyUsageRollup.objects.filter(tenant_id=tenant_id, bucket__lt=FIRST_KEPT).exists()

    sums = rolled_usage_sums(tenant_id=tenant_id)

    assert sums.requests == 2
    assert sums.requests == UsageRecord.objects.filter(tenant_id=tenant_id).count()


def test_a_start_before_the_first_kept_month_counts_from_that_month(pruned: IssuedKey) -> None:
    tenant_id = pruned.api_key.tenant_id

    assert rolled_usage_sums(tenant_id=tenant_id, start=datetime(2028, 6, 1, tzinfo=UTC)).requests == 2
    assert rolled_usage_sums(tenant_id=tenant_id, start=datetime(2029, 2, 1, tzinfo=UTC)).requests == 1
    assert rolled_usage_sums(tenant_id=tenant_id, end=datetime(2028, 12, 1, tzinfo=UTC)).requests == 0


def test_without_a_retention_every_rolled_up_month_is_counted(owner: IssuedKey, settings: Any) -> None:
    settings.PORTICO_LEDGER_RETENTION_MONTHS = 0
    for created_at in (datetime(2020, 5, 4, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)):
        make_usage(api_key=owner.api_key, created_at=created_at)
    usage_rollups_update()

    assert rolled_usage_sums(tenant_id=owner.api_key.tenant_id).requests == 2
