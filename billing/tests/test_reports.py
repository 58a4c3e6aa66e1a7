"""Usage reports from the rollups reconcile with the raw ledger to the cent; percentiles come from the buckets.

The ledger is generated (billing/tests/ledger_rows.py) for acme's two keys,
`owner` and `teammate`, and for `outsider`, a key of globex.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from billing.histograms import BOUNDS_MS, BUCKETS, bucket_of, bucket_range, percentile
from billing.models import Budget, DeploymentPrice, RateLimit, UsageRecord
from billing.reports import dashboard, report_rows, tenant_report
from billing.rollups import usage_rollups_update
from billing.tests.ledger_rows import error_class, make_ledger
from providers.tests.factories import make_provider, make_route

START = datetime(2026, 11, 6, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")


# --- Percentiles from bucket counts (pure) --------------------------------------------------------


def _counts(**by_index: int) -> list[int]:
    counts = [0] * BUCKETS
    for index, count in by_index.items():
        counts[int(index.removeprefix("b"))] = count
    return counts


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        (_counts(), 0.5, None),
        (_counts(b2=10), 0.5, 125.0),  # (100, 150]: half way through
        (_counts(b2=10), 1.0, 150.0),
        (_counts(b2=10), 0.0, 100.0),
        (_counts(b0=10, b1=10), 0.5, 50.0),  # the median is the first bucket's upper end
        (_counts(b0=10, b1=10), 0.95, 95.0),
        (_counts(b0=1, b20=99), 0.5, float(BOUNDS_MS[-1])),  # past the largest bound: "at least" it
        (_counts(b0=99, b20=1), 0.95, 50 * 95 / 99),
    ],
)
def test_a_percentile_is_interpolated_within_its_bucket(counts, q, expected):
    assert percentile(counts, q) == (pytest.approx(expected) if expected is not None else None)


def test_percentiles_of_evenly_spread_values_are_exact_and_of_skewed_ones_within_a_bucket():
    even = [0] * BUCKETS
    for value in range(1, 1001):
        even[bucket_of(value)] += 1
    assert percentile(even, 0.5) == pytest.approx(500)
    assert percentile(even, 0.95) == pytest.approx(950)

    skewed = [int(1.07**step) for step in range(140)]  # 1 ms to some 13 s, crowded at the low end
    counts = [0] * BUCKETS
    for value in skewed:
        counts[bucket_of(value)] += 1
    for q in (0.5, 0.95):
        true = statistics.quantiles(skewed, n=100, method="inclusive")[int(q * 100) - 1]
        lower, upper = bucket_range(bucket_of(int(true)))
        assert abs(percentile(counts, q) - true) <= (upper or BOUNDS_MS[-1]) - (lower or 0)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_a_quantile_outside_0_to_1_is_refused(bad):
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1] * BUCKETS, bad)


def test_a_histogram_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="buckets"):
        percentile([1, 2, 3], 0.5)


def test_each_value_falls_in_the_bucket_whose_range_holds_it():
    for bound in BOUNDS_MS:
        for value in (bound - 1, bound, bound + 1):
            lower, upper = bucket_range(bucket_of(value))
            assert lower is None or value > lower
            assert upper is None or value <= upper


# --- Reports against the ledger -------------------------------------------------------------------


@pytest.fixture
def ledger(owner, teammate, outsider) -> list[UsageRecord]:
    """Ten days of generated traffic, rolled up."""
    keys = [owner.api_key, teammate.api_key, outsider.api_key]
    make_ledger(keys=keys, rows=1500, start=START, hours=9 * 24 + 12)
    usage_rollups_update()
    return list(UsageRecord.objects.all())


def _money(value: Any) -> Decimal:
    # PostgreSQL sums numerics exactly; SQLite keeps them as doubles, good to far below a cent.
    return Decimal(value) if connection.vendor == "postgresql" else Decimal(value).quantize(Decimal("1e-8"))


def _day(record: UsageRecord) -> date:
    return record.created_at.astimezone(UTC).date()


def _tally(records: Iterable[UsageRecord]) -> dict[str, Any]:
    records = list(records)
    return {
        "requests": len(records),
        "errors": sum(record.status >= 400 for record in records),
        **{name: sum(getattr(record, name) for record in records) for name in TOKENS},
        "cost": _money(sum((record.cost for record in records), Decimal(0))),
        "provider_cost": _money(sum((record.provider_cost for record in records), Decimal(0))),
    }


def _group_value(record: UsageRecord, name: str) -> tuple[Any, ...]:
    return {
        "day": (_day(record),),
        "model": (record.model,),
        "key": (record.tenant_id, record.api_key_id),
        "deployment": (record.deployment_id or 0,),
        "provider": (record.provider,),
    }[name]


GROUP_FIELDS = {
    "day": ("day",),
    "model": ("model",),
    "key": ("tenant_id", "api_key_id"),
    "deployment": ("deployment_id",),
    "provider": ("provider",),
}


@pytest.mark.parametrize(
    "group_by",
    [["day"], ["model"], ["key"], ["deployment"], ["provider"], ["day", "model", "key"], ["provider", "deployment"]],
)
def test_report_rows_reconcile_with_the_ledger_group_by_group(ledger, group_by):
    first, last = date(2026, 11, 8), date(2026, 11, 13)
    expected: dict[tuple[Any, ...], list[UsageRecord]] = defaultdict(list)
    for record in ledger:
        if first <= _day(record) <= last:
            expected[sum((_group_value(record, name) for name in group_by), ())].append(record)

    rows = list(report_rows(tenant_id=None, start=first, end=last, group_by=group_by))

    got = {
        sum((tuple(getattr(row, field) for field in GROUP_FIELDS[name]) for name in group_by), ()): {
            "requests": row.requests,
            "errors": row.errors,
            **{name: getattr(row, name) for name in TOKENS},
            "cost": _money(row.cost),
            "provider_cost": _money(row.provider_cost),
        }
        for row in rows
    }
    assert got == {group: _tally(records) for group, records in expected.items()}
    assert [row for row in rows if row.model is not None and "model" not in group_by] == []
    in_range = UsageRecord.objects.filter(created_at__gte=START.replace(day=8), created_at__lt=START.replace(day=14))
    assert _money(sum((row.cost for row in rows), Decimal(0))) == _money(in_range.aggregate(total=Sum("cost"))["total"])


def test_report_rows_keep_to_the_tenants_asked_for(ledger, tenant, outsider):
    globex = outsider.api_key.tenant_id
    everything = dict(start=START.date(), end=NOW.date(), group_by=["key"])

    acme_rows = list(report_rows(tenant_id=tenant.pk, **everything))
    visible = list(report_rows(tenant_id=None, tenant_ids=[globex], **everything))
    crossed = list(report_rows(tenant_id=tenant.pk, tenant_ids=[globex], **everything))

    assert {row.tenant_id for row in acme_rows} == {tenant.pk}
    assert sum(row.requests for row in acme_rows) == sum(record.tenant_id == tenant.pk for record in ledger)
    assert {row.tenant_id for row in visible} == {globex}
    assert crossed == []


def test_report_rows_refuse_an_unknown_grouping_and_a_backwards_range():
    with pytest.raises(ValueError, match="cannot group by colour"):
        next(report_rows(tenant_id=None, start=START.date(), end=NOW.date(), group_by=["colour"]))
    with pytest.raises(ValueError, match="on or after"):
        next(report_rows(tenant_id=None, start=NOW.date(), end=START.date(), group_by=["day"]))


def test_a_tenants_report_reconciles_with_its_ledger_rows(ledger, tenant, owner, teammate):
    first, last = date(2026, 11, 7), date(2026, 11, 12)
    mine = [record for record in ledger if record.tenant_id == tenant.pk and first <= _day(record) <= last]

    report = tenant_report(tenant_id=tenant.pk, start=first, end=last, now=NOW)

    assert report.tenant_name == tenant.name
    totals = report.totals
    assert {
        "requests": totals.requests,
        "errors": totals.errors,
        **{name: getattr(totals, name) for name in TOKENS},
        "cost": _money(totals.cost),
        "provider_cost": _money(totals.provider_cost),
    } == _tally(mine)
    per_day_model: dict[tuple[date, str], list[UsageRecord]] = defaultdict(list)
    for record in mine:
        per_day_model[(_day(record), record.model)].append(record)
    assert {(line.day, line.model): (line.requests, _money(line.cost)) for line in report.days} == {
        group: (len(records), _tally(records)["cost"]) for group, records in per_day_model.items()
    }
    assert [line.day for line in report.days] == sorted(line.day for line in report.days)
    assert {key.api_key_id: (key.name, key.totals.requests) for key in report.keys} == {
        owner.api_key.pk: ("owner", sum(record.api_key_id == owner.api_key.pk for record in mine)),
        teammate.api_key.pk: ("teammate", sum(record.api_key_id == teammate.api_key.pk for record in mine)),
    }
    assert report.keys[0].totals.cost >= report.keys[1].totals.cost
    classes = defaultdict(int)
    for record in mine:
        if failed := error_class(record.status, record.error_type):
            classes[failed] += 1
    assert {error.error_class: error.count for error in report.errors} == classes
    assert [error.count for error in report.errors] == sorted(classes.values(), reverse=True)


def test_a_tenants_statement_holds_the_month_so_far_and_its_budgets_and_limits(ledger, tenant, owner, teammate):
    tenant_budget = Budget.objects.create(tenant=tenant, period="monthly", amount=Decimal("2.5"), soft_limit_percent=50)
    daily = Budget.objects.create(api_key=owner.api_key, period="daily", amount=Decimal("1000"))
    lifetime = Budget.objects.create(api_key=teammate.api_key, period="none", amount=Decimal("0.01"))
    RateLimit.objects.create(tenant=tenant, requests_per_minute=600)
    RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", tokens_per_minute=10_000)
    mine = [record for record in ledger if record.tenant_id == tenant.pk]

    statement = tenant_report(tenant_id=tenant.pk, start=NOW.date(), end=NOW.date(), now=NOW).statement

    assert (statement.month, statement.start, statement.through) == ("2026-11", date(2026, 11, 1), NOW)
    assert _money(statement.totals.cost) == _tally(mine)["cost"]
    assert statement.projected_cost > statement.totals.cost  # half a month gone, at the same pace
    uses = {use.budget_id: use for use in statement.budgets}
    spent = {
        tenant_budget.pk: _tally(mine)["cost"],
        daily.pk: _tally(r for r in mine if r.api_key_id == owner.api_key.pk and _day(r) == NOW.date())["cost"],
        lifetime.pk: _tally(r for r in mine if r.api_key_id == teammate.api_key.pk)["cost"],
    }
    assert {budget_id: _money(use.spent) for budget_id, use in uses.items()} == spent
    month = uses[tenant_budget.pk]
    assert month.used == pytest.approx(float(spent[tenant_budget.pk] / Decimal("2.5")))
    assert month.soft_reached == (spent[tenant_budget.pk] >= Decimal("1.25"))
    assert month.hard_reached == (spent[tenant_budget.pk] >= Decimal("2.5"))
    assert (uses[daily.pk].soft_reached, uses[daily.pk].hard_reached) == (False, False)
    assert (uses[lifetime.pk].hard_reached, uses[lifetime.pk].period_name, uses[lifetime.pk].owner) == (
        True,
        "all",
        "teammate",
    )
    assert [(limit.owner, limit.model, limit.requests_per_minute) for limit in statement.rate_limits] == [
        (tenant.name, "", 600),
        ("owner", "gpt-4o", None),
    ]


def test_a_report_for_a_quiet_period_is_empty_not_an_error(tenant):
    report = tenant_report(tenant_id=tenant.pk, start=date(2020, 1, 1), end=date(2020, 1, 31), now=NOW)

    assert (report.totals.requests, report.totals.cost, report.days, report.keys, report.errors) == (
        0,
        0,
        (),
        (),
        (),
    )


def _in_window(ledger: list[UsageRecord], start: datetime) -> list[UsageRecord]:
    return [record for record in ledger if start <= record.created_at <= NOW]


@pytest.mark.parametrize(
    ("window", "start"),
    [
        ("1h", datetime(2026, 11, 15, 11, 0, tzinfo=UTC)),
        ("24h", datetime(2026, 11, 14, 12, 0, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 8, 0, 0, tzinfo=UTC)),
    ],
)
def test_the_dashboard_sums_its_window_rounded_out_to_whole_buckets(ledger, window, start):
    seen = _in_window(ledger, start)

    board = dashboard(window=window, now=NOW)

    assert (board.start, board.end) == (start, NOW)
    assert board.totals.requests == len(seen)
    assert _money(board.totals.cost) == _tally(seen)["cost"]


def test_the_dashboard_measures_each_provider_and_model(ledger):
    seen = _in_window(ledger, datetime(2026, 11, 8, tzinfo=UTC))
    minutes = (NOW - datetime(2026, 11, 8, tzinfo=UTC)).total_seconds() / 60

    board = dashboard(window="7d", now=NOW)

    for line in board.providers:
        served = [r for r in seen if r.provider == line.name and r.deployment_id is not None]
        succeeded = [r.latency_ms for r in served if r.status < 400]
        assert (line.requests, line.errors) == (len(served), len(served) - len(succeeded))
        assert line.success_rate == pytest.approx(len(succeeded) / len(served))
        assert line.requests_per_minute == pytest.approx(len(served) / minutes)
        true_median = statistics.median(succeeded)
        lower, upper = bucket_range(bucket_of(int(true_median)))
        assert abs(line.latency_p50_ms - true_median) <= (upper or BOUNDS_MS[-1]) - (lower or 0)
        ttfts = [r.first_token_ms for r in served if r.first_token_ms is not None]
        assert line.ttft_p95_ms >= line.ttft_p50_ms >= min(ttfts) - 50
    assert sorted(line.name for line in board.models) == sorted({r.model for r in seen})
    assert sum(line.requests for line in board.models) == len(seen)


def test_the_dashboard_shows_the_share_each_deployment_served(ledger):
    seen = _in_window(ledger, datetime(2026, 10, 16, tzinfo=UTC))

    board = dashboard(window="30d", now=NOW)

    for model in board.shares:
        served = [r for r in seen if r.model == model.model and r.deployment_id is not None]
        assert model.requests == len(served)
        assert {share.deployment_id: share.requests for share in model.deployments} == {
            deployment: sum(r.deployment_id == deployment for r in served)
            for deployment in {r.deployment_id for r in served}
        }
        assert sum(share.share for share in model.deployments) == pytest.approx(1.0)


def test_the_dashboard_shows_spend_and_margin_per_tenant_provider_and_model(ledger, tenant):
    board = dashboard(window="30d", now=NOW)

    by_tenant = {line.id: line for line in board.spend_by_tenant}
    acme = [r for r in ledger if r.tenant_id == tenant.pk]
    assert _money(by_tenant[tenant.pk].cost) == _tally(acme)["cost"]
    assert by_tenant[tenant.pk].name == tenant.name
    priced = [r for r in acme if r.provider_cost > 0]
    assert _money(by_tenant[tenant.pk].margin) == _money(sum((r.cost - r.provider_cost for r in priced), Decimal(0)))
    assert [line.cost for line in board.spend_by_provider] == sorted(
        (line.cost for line in board.spend_by_provider), reverse=True
    )
    assert _money(sum((line.cost for line in board.spend_by_model), Decimal(0))) == _tally(ledger)["cost"]
    assert _money(board.margin) == _money(
        sum((r.cost - r.provider_cost for r in ledger if r.provider_cost > 0), Decimal(0))
    )


def test_a_deployment_whose_known_provider_cost_is_zero_has_a_margin_and_one_never_costed_has_none(owner):
    self_hosted = make_route(provider=make_provider(name="self-hosted"), public_id="llama-local")
    DeploymentPrice.objects.create(deployment=self_hosted, effective_from=START)  # free to run: 0 per million
    unpriced = make_route(provider=make_provider(name="unpriced"), public_id="llama-elsewhere")
    served = [
        *make_ledger(
            keys=[owner.api_key],
            rows=20,
            start=START,
            hours=24,
            model="llama-local",
            provider="self-hosted",
            deployment_id=self_hosted.pk,
            provider_cost=Decimal(0),
        ),
        *make_ledger(
            keys=[owner.api_key],
            rows=20,
            start=START,
            hours=24,
            seed=9,
            model="llama-elsewhere",
            provider="unpriced",
            deployment_id=unpriced.pk,
            provider_cost=Decimal(0),
        ),
    ]
    usage_rollups_update()

    board = dashboard(window="30d", now=NOW)

    charged = _money(sum((r.cost for r in served if r.deployment_id == self_hosted.pk), Decimal(0)))
    assert charged > 0
    by_provider = {line.name: line for line in board.spend_by_provider}
    assert _money(by_provider["self-hosted"].margin) == charged
    assert by_provider["self-hosted"].margin_coverage == pytest.approx(1.0)
    assert by_provider["unpriced"].margin is None
    assert {line.name: line.margin for line in board.spend_by_model}["llama-elsewhere"] is None
    assert _money(board.margin) == charged
    assert _money(board.spend_by_tenant[0].margin) == charged


def test_the_dashboard_shows_every_budgets_progress(ledger, tenant, outsider):
    Budget.objects.create(tenant=tenant, period="monthly", amount=Decimal("1000000"))
    Budget.objects.create(api_key=outsider.api_key, period="none", amount=Decimal("0.000001"))

    uses = {use.owner: use for use in dashboard(window="1h", now=NOW).budgets}

    globex = [r for r in ledger if r.api_key_id == outsider.api_key.pk]
    assert _money(uses[tenant.name].spent) == _tally(r for r in ledger if r.tenant_id == tenant.pk)["cost"]
    assert 0 < uses[tenant.name].used < 1
    assert _money(uses["outsider"].spent) == _tally(globex)["cost"]
    assert uses["outsider"].hard_reached


def test_an_unknown_window_is_refused():
    with pytest.raises(ValueError, match="1h, 24h, 7d, 30d"):
        dashboard(window="2w", now=NOW)


def test_reports_read_the_rollups_not_the_ledger(ledger, tenant):
    before = (
        tenant_report(tenant_id=tenant.pk, start=START.date(), end=NOW.date(), now=NOW),
        dashboard(window="30d", now=NOW),
        list(report_rows(tenant_id=None, start=START.date(), end=NOW.date(), group_by=["day", "key"])),
    )

    UsageRecord.objects.all().delete()  # old ledger rows may be deleted; the rollups keep their sums

    after = (
        tenant_report(tenant_id=tenant.pk, start=START.date(), end=NOW.date(), now=NOW),
        dashboard(window="30d", now=NOW),
        list(report_rows(tenant_id=None, start=START.date(), end=NOW.date(), group_by=["day", "key"])),
    )
    assert after == before
    assert before[0].totals.requests > 0
