"""What the hot path knows of billing: usage read from upstream answers, exact costs, periods, the loaded snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from billing.facade import (
    BudgetInfo,
    LimitInfo,
    PriceInfo,
    PriceSchedule,
    Usage,
    cost_of,
    load_billing,
    period_bounds,
    to_nano,
)
from billing.models import Budget, RateLimit
from billing.services import budget_set, price_add
from billing.tests.factories import make_usage
from providers.tests.factories import make_route
from tenants.models import Tenant
from tenants.tests.factories import IssuedKey

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
GPT_4O = PriceInfo(since=0.0, input=Decimal("2.5"), output=Decimal("10"), cached_input=Decimal("1.25"))


# --- Usage.from_openai ---


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(None, None, id="no usage object"),
        pytest.param("12 tokens", None, id="not an object"),
        pytest.param({}, Usage(), id="an empty object"),
        pytest.param(
            {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            Usage(prompt_tokens=12, completion_tokens=5),
            id="chat completions",
        ),
        pytest.param(
            {
                "prompt_tokens": 2006,
                "completion_tokens": 300,
                "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
            },
            Usage(prompt_tokens=2006, completion_tokens=300, cached_tokens=1920, reasoning_tokens=256),
            id="chat completions with cached and reasoning tokens",
        ),
        pytest.param({"prompt_tokens": 8, "total_tokens": 8}, Usage(prompt_tokens=8), id="embeddings"),
        pytest.param(
            {
                "input_tokens": 40,
                "output_tokens": 9,
                "input_tokens_details": {"cached_tokens": 32},
                "output_tokens_details": {"reasoning_tokens": 4},
            },
            Usage(prompt_tokens=40, completion_tokens=9, cached_tokens=32, reasoning_tokens=4),
            id="responses",
        ),
        pytest.param(
            {
                "prompt_tokens": None,
                "completion_tokens": None,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            Usage(),
            id="nulls where numbers belong",
        ),
    ],
)
def test_it_reads_every_shape_of_openai_usage(usage: Any, expected: Usage | None) -> None:
    assert Usage.from_openai(usage) == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param({"prompt_tokens": -3, "completion_tokens": 5}, Usage(completion_tokens=5), id="negative"),
        pytest.param({"prompt_tokens": 2**40}, Usage(prompt_tokens=2**31 - 1), id="beyond a 32-bit column"),
        pytest.param({"prompt_tokens": "n/a", "completion_tokens": 5}, Usage(completion_tokens=5), id="not a number"),
    ],
)
def test_counts_an_upstream_got_wrong_become_counts_the_ledger_can_store(
    usage: dict[str, Any], expected: Usage
) -> None:
    assert Usage.from_openai(usage) == expected


def test_the_total_is_prompt_and_completion_tokens() -> None:
    assert Usage(prompt_tokens=12, completion_tokens=5, cached_tokens=10, reasoning_tokens=3).total == 17


# --- cost_of and to_nano ---


@pytest.mark.parametrize(
    ("price", "usage", "cost"),
    [
        pytest.param(None, Usage(prompt_tokens=1000, completion_tokens=1000), Decimal(0), id="an unpriced route"),
        pytest.param(GPT_4O, Usage(), Decimal(0), id="no tokens"),
        pytest.param(
            GPT_4O, Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000), Decimal("12.5"), id="a million each"
        ),
        pytest.param(GPT_4O, Usage(prompt_tokens=11, completion_tokens=6), Decimal("0.0000875"), id="a short chat"),
        pytest.param(
            GPT_4O,
            Usage(prompt_tokens=2000, completion_tokens=0, cached_tokens=1500),
            Decimal("0.003125"),
            id="cached tokens at the cached price",
        ),
        pytest.param(
            GPT_4O,
            Usage(prompt_tokens=100, cached_tokens=400),
            Decimal("0.000125"),
            id="no more cached tokens than prompt tokens",
        ),
        pytest.param(
            PriceInfo(since=0.0, input=Decimal("0.000001"), output=Decimal(0), cached_input=Decimal(0)),
            Usage(prompt_tokens=1),
            Decimal("1E-12"),
            id="a fraction of a nano-dollar",
        ),
    ],
)
def test_cost_is_exact(price: PriceInfo | None, usage: Usage, cost: Decimal) -> None:
    assert cost_of(price, usage) == cost


@pytest.mark.parametrize(
    ("amount", "nano"),
    [
        (Decimal(0), 0),
        (Decimal("1"), 1_000_000_000),
        (Decimal("0.0000875"), 87_500),
        (Decimal("1E-12"), 1),  # rounded up: a budget never under-counts
        (Decimal("0.0000000011"), 2),
    ],
)
def test_usd_becomes_whole_nano_dollars_rounded_up(amount: Decimal, nano: int) -> None:
    assert to_nano(amount) == nano


# --- PriceSchedule.at ---


def _price(input_per_million: str, since: float) -> PriceInfo:
    return PriceInfo(since=since, input=Decimal(input_per_million), output=Decimal(0), cached_input=Decimal(0))


SCHEDULE = PriceSchedule(starts=(100.0, 200.0), prices=(_price("1", 100.0), _price("2", 200.0)))


@pytest.mark.parametrize(
    ("schedule", "when", "price"),
    [
        pytest.param(PriceSchedule(), 150.0, None, id="no prices"),
        pytest.param(SCHEDULE, 99.9, None, id="before the first price"),
        pytest.param(SCHEDULE, 100.0, SCHEDULE.prices[0], id="the instant a price starts"),
        pytest.param(SCHEDULE, 199.9, SCHEDULE.prices[0], id="just before the next price"),
        pytest.param(SCHEDULE, 200.0, SCHEDULE.prices[1], id="the instant the next price starts"),
        pytest.param(SCHEDULE, 1e12, SCHEDULE.prices[1], id="long after the last price"),
    ],
)
def test_the_price_in_effect_is_the_latest_that_had_started(
    schedule: PriceSchedule, when: float, price: PriceInfo | None
) -> None:
    assert schedule.at(when) == price


# --- period_bounds ---


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


# --- load_billing ---


@pytest.mark.django_db
def test_it_loads_each_routes_price_history_oldest_first() -> None:
    route, other = make_route(public_id="gpt-4o"), make_route(public_id="gpt-4o-mini")
    later = price_add(
        route=route,
        input_per_million=Decimal("2"),
        output_per_million=Decimal("8"),
        effective_from=NOW,
    )
    earlier = price_add(
        route=route,
        input_per_million=Decimal("2.5"),
        output_per_million=Decimal("10"),
        cached_input_per_million=Decimal("1.25"),
        effective_from=NOW - timedelta(days=30),
    )
    price_add(route=other, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.6"), effective_from=NOW)

    prices = load_billing(now=NOW).prices

    assert sorted(prices) == ["gpt-4o", "gpt-4o-mini"]
    assert prices["gpt-4o"] == PriceSchedule(
        starts=(earlier.effective_from.timestamp(), later.effective_from.timestamp()),
        prices=(
            PriceInfo(earlier.effective_from.timestamp(), Decimal("2.5"), Decimal("10"), Decimal("1.25")),
            # No cached price: cached input tokens cost what other input tokens do.
            PriceInfo(later.effective_from.timestamp(), Decimal("2"), Decimal("8"), Decimal("2")),
        ),
    )
    assert prices["gpt-4o"].at(NOW.timestamp() - 1) == prices["gpt-4o"].prices[0]


@pytest.mark.django_db
def test_it_loads_limits_by_owner_and_model(tenant: Tenant, owner: IssuedKey) -> None:
    RateLimit.objects.create(tenant=tenant, requests_per_minute=600)
    RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", tokens_per_minute=10_000, max_concurrent=4)

    limits = load_billing(now=NOW).limits

    assert limits == {
        ("tenant", tenant.pk, ""): LimitInfo(requests_per_minute=600, tokens_per_minute=None, max_concurrent=None),
        ("key", owner.api_key.pk, "gpt-4o"): LimitInfo(
            requests_per_minute=None, tokens_per_minute=10_000, max_concurrent=4
        ),
    }


@pytest.mark.django_db
def test_it_loads_budgets_with_the_spend_of_their_current_period(
    tenant: Tenant, owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    monthly = budget_set(tenant=tenant, amount=Decimal("100"))
    daily = budget_set(api_key=owner.api_key, amount=Decimal("5"), period=Budget.Period.DAILY, soft_limit_percent=50)
    make_usage(api_key=owner.api_key, created_at=NOW, cost="1")
    make_usage(api_key=teammate.api_key, created_at=NOW - timedelta(days=2), cost="2")
    make_usage(api_key=owner.api_key, created_at=datetime(2026, 10, 31, tzinfo=UTC), cost="4")
    make_usage(api_key=outsider.api_key, created_at=NOW, cost="8")

    budgets = load_billing(now=NOW).budgets

    assert budgets == {
        ("tenant", tenant.pk): BudgetInfo(
            id=monthly.pk,
            period="monthly",
            amount=Decimal("100"),
            soft_limit_percent=80,
            period_name="2026-11",
            spent=Decimal("3"),
        ),
        ("key", owner.api_key.pk): BudgetInfo(
            id=daily.pk,
            period="daily",
            amount=Decimal("5"),
            soft_limit_percent=50,
            period_name="2026-11-15",
            spent=Decimal("1"),
        ),
    }


@pytest.mark.django_db
def test_a_budget_nobody_spent_against_has_spent_nothing(owner: IssuedKey) -> None:
    budget_set(api_key=owner.api_key, amount=Decimal("5"), period=Budget.Period.NONE)

    [budget] = load_billing(now=NOW).budgets.values()

    assert (budget.period_name, budget.spent) == ("all", Decimal(0))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("limit_on", "applies_to"),
    [
        ("nobody", {"owner": False, "teammate": False, "outsider": False}),
        ("owner's key", {"owner": True, "teammate": False, "outsider": False}),
        ("owner's tenant", {"owner": True, "teammate": True, "outsider": False}),
        ("owner's key budget", {"owner": True, "teammate": False, "outsider": False}),
        ("owner's tenant budget", {"owner": True, "teammate": True, "outsider": False}),
    ],
)
def test_only_keys_with_a_limit_or_budget_go_to_the_limiter(
    tenant: Tenant,
    owner: IssuedKey,
    teammate: IssuedKey,
    outsider: IssuedKey,
    limit_on: str,
    applies_to: dict[str, bool],
) -> None:
    if limit_on == "owner's key":
        RateLimit.objects.create(api_key=owner.api_key, model="gpt-4o", requests_per_minute=1)
    elif limit_on == "owner's tenant":
        RateLimit.objects.create(tenant=tenant, max_concurrent=1)
    elif limit_on == "owner's key budget":
        budget_set(api_key=owner.api_key, amount=Decimal("1"))
    elif limit_on == "owner's tenant budget":
        budget_set(tenant=tenant, amount=Decimal("1"))
    keys = {"owner": owner, "teammate": teammate, "outsider": outsider}

    billing = load_billing(now=NOW)

    assert {
        name: billing.applies_to(issued.api_key.pk, issued.api_key.tenant_id) for name, issued in keys.items()
    } == applies_to
