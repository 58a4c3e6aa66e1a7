"""The values a setup file holds: each read from YAML with its checks, and written back as the same text.

A reader takes what YAML gave and answers the value, or raises Problem with
what is wrong (its caller knows where). Amounts are Decimal, written as their
shortest exact text; times are aware, written in UTC with a `Z`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from providers.models import HEADER_NAME


class Problem(Exception):
    """One value is wrong; whoever read it knows where it is."""


def kind_of(value: Any) -> str:
    """What YAML gave, said as a person would: `expected text, got a number`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "text" if isinstance(value, str) else type(value).__name__


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Problem(f"expected text, got {kind_of(value)}" + (" (quote it)" if kind_of(value) == "a number" else ""))
    return value


def name(value: Any) -> str:
    if not text(value).strip():
        raise Problem("must not be empty")
    return value


def choice(options: Iterable[str]) -> Callable[[Any], str]:
    known = tuple(options)

    def parse(value: Any) -> str:
        if text(value) not in known:
            raise Problem(f"{value!r} is not one of {', '.join(repr(option) for option in known)}")
        return value

    return parse


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Problem(f"expected true or false, got {kind_of(value)}")
    return value


def whole(*, minimum: int | None = None, maximum: int = 2_147_483_647, null: bool = False) -> Callable[[Any], Any]:
    """A whole number; the default maximum is what every integer column holds."""

    def parse(value: Any) -> int | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise Problem(f"expected a whole number{' or null' if null else ''}, got {kind_of(value)}")
        if minimum is not None and value < minimum:
            raise Problem(f"must be at least {minimum}")
        if value > maximum:
            raise Problem(f"must be at most {maximum}")
        return value

    return parse


def real(*, minimum: float, null: bool = False) -> Callable[[Any], Any]:
    def parse(value: Any) -> float | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Problem(f"expected a number{' or null' if null else ''}, got {kind_of(value)}")
        if not minimum <= value <= 86_400:
            raise Problem(f"must be between {minimum} and 86400 seconds")
        return float(value)

    return parse


def money(*, digits: int, places: int, null: bool = False) -> Callable[[Any], Any]:
    """An amount in USD that fits its column: `digits` in all, `places` of them after the point."""

    def parse(value: Any) -> Decimal | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise Problem(f"expected an amount in USD{' or null' if null else ''}, got {kind_of(value)}")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise Problem(f"{value!r} is not an amount") from None
        if not amount.is_finite() or amount < 0:
            raise Problem("must be a finite amount, 0 or more")
        if amount >= Decimal(10) ** (digits - places):
            raise Problem(f"must be less than {10 ** (digits - places)}")
        if amount != amount.quantize(Decimal(1).scaleb(-places)):
            raise Problem(f"at most {places} decimal places")
        return amount

    return parse


def instant(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Problem(f"{value!r} is not an ISO 8601 time, e.g. 2026-01-01T00:00:00Z") from None
    if not isinstance(value, datetime):
        raise Problem(f"expected a time, got {kind_of(value)}")
    if value.tzinfo is None:
        raise Problem("give the time zone, e.g. 2026-01-01T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Problem("is out of range in UTC") from None


def names(*, choices: Sequence[str] | None = None, null: bool = False, ordered: bool = True) -> Callable[[Any], Any]:
    """A list of distinct texts; `ordered` keeps the file's order, else they are a set (sorted, or in `choices`')."""

    def parse(value: Any) -> list[str] | None:
        if value is None and null:
            return None
        if not isinstance(value, list):
            raise Problem(f"expected a list{' or null' if null else ''}, got {kind_of(value)}")
        items = [name(item) for item in value]
        if len(set(items)) != len(items):
            raise Problem("names an item twice")
        unknown = [item for item in items if choices is not None and item not in choices]
        if unknown:
            raise Problem(f"{unknown[0]!r} is not one of {', '.join(choices or ())}")
        if ordered:
            return items
        return [item for item in choices if item in items] if choices else sorted(items)

    return parse


def headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Problem("expected a mapping of header names to text")
    for header in value:
        try:
            HEADER_NAME(header)
        except ValidationError:
            raise Problem(f"{header!r} is not a valid HTTP header name") from None
    return dict(value)


def mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise Problem(f"expected a mapping, got {kind_of(value)}")
    return dict(value)


def anything(value: Any) -> Any:
    return value


# --- writing values ---------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    return value


def amount_text(value: Decimal | None) -> str | None:
    """An amount as the shortest exact text: 2.500000 and 2.5 are written alike on every database."""
    return None if value is None else format(value.normalize(), "f")


def instant_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sorted_json(value: Any) -> Any:
    """JSON with its keys sorted: databases hand JSON objects back in differing key orders."""
    if isinstance(value, dict):
        return {key: sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json(item) for item in value]
    return value
