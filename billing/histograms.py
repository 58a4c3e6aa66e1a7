"""The latency histograms of the usage rollups: fixed bucket bounds, and percentiles read back from them.

A rollup row counts its requests' latencies (and times to first token) in
len(BOUNDS_MS) + 1 buckets: bucket 0 holds values up to BOUNDS_MS[0], bucket
i values in (BOUNDS_MS[i-1], BOUNDS_MS[i]], and the last every value above
the largest bound. Counts add up across rows, hours and days, so a
percentile over any window and any grouping is read from summed counts,
never from the raw ledger.

Within its bucket a percentile is interpolated linearly. Neighbouring bounds
are at most twice apart (most 1.5 times), so p50 and p95 land within their
bucket's width of the true value, and are exact whenever the values are
spread evenly inside it. A percentile that falls in the last bucket is given
as the largest bound: "at least that".

No Django here: the rollup maintenance builds its SQL from these bounds, the
models their columns, and the reports their percentiles.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

BOUNDS_MS: tuple[int, ...] = (
    50,
    100,
    150,
    200,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
    120_000,
)
BUCKETS = len(BOUNDS_MS) + 1


def bucket_columns(prefix: str) -> tuple[str, ...]:
    """The rollup columns of one histogram, in bucket order: `latency_b00` … `latency_b20`."""
    return tuple(f"{prefix}_b{index:02d}" for index in range(BUCKETS))


def bucket_of(value_ms: int) -> int:
    """The index of the bucket a value is counted in."""
    return bisect.bisect_left(BOUNDS_MS, value_ms)


def bucket_range(index: int) -> tuple[int | None, int | None]:
    """The bucket's (exclusive lower, inclusive upper) bounds; None for an open end."""
    lower = BOUNDS_MS[index - 1] if index > 0 else None
    upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else None
    return lower, upper


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The `q`-quantile (0 ≤ q ≤ 1) in milliseconds of the values counted in `counts`; None if there are none."""
    if len(counts) != BUCKETS:
        raise ValueError(f"a histogram has {BUCKETS} buckets, not {len(counts)}")
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total  # how many values lie at or below the quantile
    seen = 0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            lower, upper = bucket_range(index)
            if upper is None:
                return float(BOUNDS_MS[-1])
            low = lower or 0
            return low + (upper - low) * (rank - seen) / count
        seen += count
    raise AssertionError("unreachable: the ranks add up to the total")  # pragma: no cover
