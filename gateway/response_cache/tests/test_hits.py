"""What a hit is charged: the model's tenant price scaled by the policy, derived once per snapshot."""

from __future__ import annotations

from decimal import Decimal

from billing.facade import BillingSnapshot, PriceInfo, PriceSchedule
from caching.facade import CacheRule
from gateway.response_cache.hits import hit_billing

PRICE = PriceInfo(since=0.0, input=Decimal("2.5"), output=Decimal("10"), cached_input=Decimal("1.25"))


def billing() -> BillingSnapshot:
    schedule = PriceSchedule(starts=(0.0,), prices=(PRICE,))
    return BillingSnapshot(prices={"gpt-cached": schedule, "gpt-other": schedule})


def charged(snapshot: BillingSnapshot, model: str = "gpt-cached") -> Decimal:
    """USD for a million tokens in and a million out, at the tenant price in force."""
    schedule = snapshot.prices.get(model)
    price = schedule.at(1.0) if schedule else None
    return price.input + price.output if price else Decimal(0)


def rule(percent: int) -> CacheRule:
    return CacheRule(enabled=True, ttl=60, percent=percent)


def test_a_full_price_hit_is_charged_as_a_miss() -> None:
    snapshot = billing()

    assert hit_billing(snapshot, "gpt-cached", rule(100)) is snapshot


def test_a_free_hit_costs_nothing() -> None:
    assert charged(hit_billing(billing(), "gpt-cached", rule(0))) == 0


def test_a_percent_hit_costs_that_share_of_the_price_of_its_model_only() -> None:
    scaled = hit_billing(billing(), "gpt-cached", rule(25))

    assert charged(scaled) == Decimal("12.5") * Decimal("0.25")
    assert charged(scaled, "gpt-other") == Decimal("12.5")


def test_the_scaled_prices_are_derived_once_per_snapshot() -> None:
    first, second = billing(), billing()

    once = hit_billing(first, "gpt-cached", rule(50))

    assert hit_billing(first, "gpt-cached", rule(50)) is once
    assert hit_billing(second, "gpt-cached", rule(50)) is not once
