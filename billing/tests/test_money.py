"""Money: usage read from upstream answers, exact costs, nano-dollars, the price in effect, how USD is shown."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from billing.money import PriceInfo, PriceSchedule, Usage, cost_of, format_money, from_nano, nano_cost_of, to_nano, usd

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


def test_integer_nano_costs_are_the_decimal_costs_rounded_up() -> None:
    # Prices as the database holds them (six decimal places) and usages from none to millions of tokens.
    draw = random.Random(20261206)
    for _ in range(2000):
        prices = [Decimal(draw.randrange(0, 10**9)).scaleb(-6) for _ in range(3)]
        price = PriceInfo(since=0.0, input=prices[0], output=prices[1], cached_input=prices[2])
        prompt = draw.choice([0, 1, 7, draw.randrange(10**7)])
        usage = Usage(
            prompt_tokens=prompt,
            completion_tokens=draw.choice([0, 1, draw.randrange(10**6)]),
            cached_tokens=draw.choice([0, prompt // 2, prompt + 5]),
        )
        assert price.units is not None
        assert nano_cost_of(price, usage) == to_nano(cost_of(price, usage)), (price, usage)


def test_a_price_finer_than_the_database_holds_is_costed_in_decimal() -> None:
    price = PriceInfo(since=0.0, input=Decimal("0.0000001"), output=Decimal(0), cached_input=Decimal(0))

    assert price.units is None
    assert nano_cost_of(price, Usage(prompt_tokens=3)) == to_nano(cost_of(price, Usage(prompt_tokens=3))) == 1
    assert nano_cost_of(None, Usage(prompt_tokens=3)) == 0


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


# --- usd ---


@pytest.mark.parametrize(
    ("amount", "cents", "shown"),
    [
        (Decimal("0.00025"), False, "0.00025"),
        (Decimal("7E-12"), False, "0.000000000007"),
        (Decimal("12.5000000000"), False, "12.5"),
        (Decimal("10"), False, "10"),
        (Decimal("0E-10"), False, "0"),
        (Decimal("-0"), False, "0"),
        (Decimal("10"), True, "10.00"),
        (Decimal("2.5"), True, "2.50"),
        (Decimal("0.0005"), True, "0.0005"),
        (Decimal(0), True, "0.00"),
    ],
)
def test_usd_is_plain_decimal_notation_with_cents_when_asked(amount: Decimal, cents: bool, shown: str) -> None:
    assert usd(amount, cents=cents) == shown


def test_nano_dollars_come_back_as_exact_usd() -> None:
    assert from_nano(to_nano(Decimal("0.0000875"))) == Decimal("0.0000875")
    assert usd(from_nano(2**62), cents=True) == "4611686018.427387904"


# --- format_money ---


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        pytest.param(Decimal("1234567.891"), "$1,234,567.89", id="thousands separated, whole cents"),
        pytest.param(Decimal("0.015"), "$0.02", id="half a cent rounds up"),
        pytest.param(Decimal("12"), "$12.00", id="always two decimals from a cent up"),
        pytest.param(Decimal("0.0000125000"), "$0.0000125", id="under a cent: three significant digits"),
        pytest.param(Decimal("0.000012345"), "$0.0000123", id="under a cent, rounded to three digits"),
        pytest.param(Decimal("7E-12"), "$0.000000000007", id="a tiny cost is never shown as zero"),
        pytest.param(Decimal("0.0099951"), "$0.01", id="rounding up to a cent shows cents"),
        pytest.param(Decimal("0E-10"), "$0.00", id="zero"),
        pytest.param(Decimal("-0"), "$0.00", id="negative zero"),
        pytest.param(Decimal("-3.1"), "-$3.10", id="negative"),
        pytest.param(Decimal("-0.0004"), "-$0.0004", id="negative under a cent"),
    ],
)
def test_format_money_shows_cents_or_enough_digits_to_be_non_zero(amount: Decimal, shown: str) -> None:
    assert format_money(amount) == shown


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("0.075"), "$0.075"),
        (Decimal("2.5"), "$2.50"),
        (Decimal("1234.567891"), "$1,234.567891"),
        (Decimal("0.000000"), "$0.00"),
    ],
)
def test_format_money_exact_keeps_every_digit_of_a_price(amount: Decimal, shown: str) -> None:
    assert format_money(amount, exact=True) == shown


def test_format_money_names_a_currency_without_a_symbol() -> None:
    assert format_money(Decimal("1234.5"), currency="EUR") == "1,234.50 EUR"
