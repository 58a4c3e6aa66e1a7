"""Budget periods are named and bounded in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing.models import Budget
from billing.periods import period_bounds

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "bounds"),
    [
        (
            Budget.Period.DAILY,
            NOW,
            ("2026-11-15", datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)),
        ),
        (
            Budget.Period.MONTHLY,
            NOW,
            ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ),
        (
            Budget.Period.MONTHLY,
            datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
            ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ),
        (
            Budget.Period.MONTHLY,
            datetime(2026, 1, 31, 18, tzinfo=UTC),
            ("2026-01", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
        ),
        (
            Budget.Period.DAILY,
            datetime(2028, 2, 29, 0, 0, tzinfo=UTC),
            ("2028-02-29", datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)),
        ),
        pytest.param(
            Budget.Period.MONTHLY,
            datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
            id="periods are UTC whatever the caller's zone",
        ),
        (Budget.Period.NONE, NOW, ("all", None, None)),
    ],
)
def test_a_period_is_named_and_bounded_in_utc(
    period: str, now: datetime, bounds: tuple[str, datetime | None, datetime | None]
) -> None:
    assert period_bounds(period, now) == bounds
