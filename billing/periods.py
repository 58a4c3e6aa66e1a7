"""Budget periods: a period's name and UTC bounds, shared by the snapshot, the limiter, alerts and reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing.models import Budget


def period_bounds(period: str, now: datetime) -> tuple[str, datetime | None, datetime | None]:
    """The name, start and end (UTC) of the budget period containing `now`."""
    now = now.astimezone(UTC)
    if period == Budget.Period.DAILY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start, start + timedelta(days=1)
    if period == Budget.Period.MONTHLY:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), start, end
    return "all", None, None
