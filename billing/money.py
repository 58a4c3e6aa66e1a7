"""Money: prices, usage, exact costs and how amounts are shown.

Money is Decimal USD; the limiter counts integer nano-dollars (`to_nano`,
rounded up so a budget never under-counts). No Django here: the hot path, the
limiter's messages, the admin and the reports all share these rules.

Two ways to write an amount, for two readers: `usd` is exact plain decimals for
programs (the `x-portico-cost` header, the limiter's messages), `format_money`
is rounded and grouped for people (every page of the console).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

MILLION = Decimal(1_000_000)
NANO = Decimal("1e9")
CENT = Decimal("0.01")
# Significant digits kept of an amount under a cent: per-request costs and per-token prices live there.
SUB_CENT_DIGITS = 3
_SYMBOLS = {"USD": "$"}


@dataclass(frozen=True, slots=True)
class PriceInfo:
    since: float  # epoch seconds
    input: Decimal  # USD per 1M tokens
    output: Decimal
    cached_input: Decimal
    # The three prices in micro-USD per 1M tokens (input, output, cached input) when they are whole numbers of
    # them, as every price the database holds is (six decimal places): costs in integers, not Decimal.
    units: tuple[int, int, int] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        scaled = [price.scaleb(6) for price in (self.input, self.output, self.cached_input)]
        exact = all(value == value.to_integral_value() for value in scaled)
        object.__setattr__(self, "units", (int(scaled[0]), int(scaled[1]), int(scaled[2])) if exact else None)


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """A model's prices, oldest first; the one in effect at a time is found by bisection."""

    starts: tuple[float, ...] = ()
    prices: tuple[PriceInfo, ...] = ()

    def at(self, when: float) -> PriceInfo | None:
        index = bisect.bisect_right(self.starts, when) - 1
        return self.prices[index] if index >= 0 else None


# Plain slots: two or three are built per call, and a frozen dataclass's constructor costs twice a plain one's
# (it sets each field through object.__setattr__). Nothing changes one once built.
@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Prompt tokens the upstream wrote to its prompt cache (Anthropic's cache_creation_input_tokens): recorded,
    # not priced, since OpenAI's usage has no such field.
    cache_creation_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> Usage | None:
        """Read OpenAI's usage object (chat, completions and embeddings shapes); None if there is none."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens")
        completion = usage.get("completion_tokens") or usage.get("output_tokens")
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        return cls(
            prompt_tokens=_count(prompt),
            completion_tokens=_count(completion),
            cached_tokens=_count(details.get("cached_tokens")),
            reasoning_tokens=_count(out_details.get("reasoning_tokens")),
            # Anthropic's field, as its adapter passes it on in the details; most answers have neither.
            cache_creation_tokens=_count(details.get("cache_creation_tokens")) if details else 0,
        )

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def minus(self, other: Usage) -> Usage:
        """What is left of this usage without `other`'s share of it (never below zero)."""
        return Usage(
            prompt_tokens=max(self.prompt_tokens - other.prompt_tokens, 0),
            completion_tokens=max(self.completion_tokens - other.completion_tokens, 0),
            cached_tokens=max(self.cached_tokens - other.cached_tokens, 0),
            reasoning_tokens=max(self.reasoning_tokens - other.reasoning_tokens, 0),
            cache_creation_tokens=max(self.cache_creation_tokens - other.cache_creation_tokens, 0),
        )


# The ledger stores counts in 32-bit integer columns.
_MAX_COUNT = 2**31 - 1


def _count(value: Any) -> int:
    """An upstream's token count as the ledger can store it: what is not a count is 0, a huge one the maximum."""
    if value.__class__ is int and 0 <= value <= _MAX_COUNT:  # what upstreams send, five times per answer
        return value
    try:
        return min(max(int(value or 0), 0), _MAX_COUNT)
    except (TypeError, ValueError, OverflowError):
        return 0


def cost_of(price: PriceInfo | None, usage: Usage) -> Decimal:
    """Exact USD: cached prompt tokens at the cached price, the rest at the input price."""
    if price is None:
        return Decimal(0)
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    amount = (
        (usage.prompt_tokens - cached) * price.input
        + cached * price.cached_input
        + usage.completion_tokens * price.output
    )
    return amount / MILLION


def nano_cost_of(price: PriceInfo | None, usage: Usage) -> int:
    """`to_nano(cost_of(price, usage))` in integers: the limiter's reservations and settlements, on every call."""
    if price is None:
        return 0
    units = price.units
    if units is None:
        return to_nano(cost_of(price, usage))
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    micro = (usage.prompt_tokens - cached) * units[0] + cached * units[2] + usage.completion_tokens * units[1]
    # That is micro-USD per million tokens times tokens: USD = micro / 1e12, so nano-USD = micro / 1000,
    # rounded up as to_nano rounds.
    return -(-micro // 1000)


def to_nano(amount: Decimal) -> int:
    """USD as whole nano-dollars, rounded up so budgets never under-count."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(nano: int) -> Decimal:
    """Whole nano-dollars as exact USD."""
    return Decimal(nano).scaleb(-9)


def usd(amount: Decimal, *, cents: bool = False) -> str:
    """USD in plain decimal notation, no exponent and no trailing zeros: "0.00025", "12", "0".

    With `cents`, at least two decimals, more only when the amount has them: "10.00", "0.0005".
    """
    text = format(amount.normalize(), "f")
    if text == "-0":
        text = "0"
    return _at_least_cents(text) if cents else text


def format_money(amount: Decimal, *, currency: str = "USD", exact: bool = False) -> str:
    """An amount for people: "$1,234.57", "$0.00", "$0.000125", "-$3.10"; other currencies as "12.00 EUR".

    From a cent up, whole cents (half up) with thousands separated by commas. A non-zero amount
    under a cent keeps three significant digits instead, so a request's cost never reads as $0.00.
    With `exact` (prices, which must read back as they were typed), every digit the amount has,
    and at least two decimals: "$0.075", "$2.50".
    """
    magnitude = abs(amount)
    sign = "-" if amount < 0 else ""
    if exact:
        text = _at_least_cents(f"{magnitude.normalize():,f}")
    elif 0 < magnitude < CENT and (shown := _significant(magnitude)) < CENT:
        text = format(shown.normalize(), "f")
    else:
        text = f"{magnitude.quantize(CENT, ROUND_HALF_UP):,}"
    symbol = _SYMBOLS.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


def _significant(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(amount.adjusted() - SUB_CENT_DIGITS + 1), ROUND_HALF_UP)


def _at_least_cents(text: str) -> str:
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"
