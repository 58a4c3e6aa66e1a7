"""How the report pages print figures: `{% load report_format %}`, then `{{ cost|money }}`, `{{ share|percent }}`…

Money goes through `billing.money.format_money`, as on every page of the console; a figure that was
not measured (None) prints as a dash, never as 0.
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from billing.money import format_money

register = template.Library()
NONE = "—"


@register.filter
def money(amount: Decimal | None) -> str:
    return NONE if amount is None else format_money(amount)


@register.filter
def percent(fraction: float | None) -> str:
    """A share or a rate from 0 to 1 (a budget's use may pass 1) as a percentage with one decimal."""
    return NONE if fraction is None else f"{fraction:.1%}"


@register.filter
def ms(milliseconds: float | None) -> str:
    return NONE if milliseconds is None else f"{milliseconds:,.0f} ms"


@register.filter
def count(number: int | None) -> str:
    """A count with thousands separated: 12,345."""
    return NONE if number is None else f"{number:,}"


@register.filter
def rate(per_minute: float) -> str:
    """Requests a minute, to two decimals: a quiet deployment's 0.04 is not 0."""
    return f"{per_minute:,.2f}"
