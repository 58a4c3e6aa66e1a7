"""Changing or withdrawing a price or provider cost that has not started yet.

Prices are a history: the snapshot charges each request at the latest row whose
`effective_from` has passed (billing.facade), so a row in effect is never edited
or deleted: a change is a new row from a later time (billing.services.price_add,
deployment_price_add). A row scheduled for the future has charged nothing yet
and may be changed or withdrawn.

The management API and the console both write prices through these functions
and billing.services, so both refuse the same rows in the same words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.utils import timezone

from billing.models import DeploymentPrice, Price


class PriceInEffect(Exception):
    """The row has started: it is history, kept as it is."""


def price_withdraw(*, price: Price, now: datetime | None = None) -> None:
    """Delete a tenant price that has not started; PriceInEffect for one that has."""
    _withdraw(price, now)


def deployment_price_withdraw(*, cost: DeploymentPrice, now: datetime | None = None) -> None:
    """Delete a provider cost that has not started; PriceInEffect for one that has."""
    _withdraw(cost, now)


Row = TypeVar("Row", Price, DeploymentPrice)
# What may be changed of a scheduled row; its model or deployment stays.
CHANGEABLE = ("effective_from", "input_per_million", "cached_input_per_million", "output_per_million")


def price_check_not_started(*, row: Price | DeploymentPrice, now: datetime | None = None) -> None:
    """PriceInEffect if the row, as stored, has started: nothing may change or withdraw it."""
    stored = type(row).objects.filter(pk=row.pk).values_list("effective_from", flat=True).first()
    started = stored if stored is not None else row.effective_from
    if started <= (now or timezone.now()):
        raise PriceInEffect(f"The price from {started.isoformat()} is in effect: add a later one instead.")


def price_change(*, row: Row, fields: dict[str, Any], now: datetime | None = None) -> Row:
    """Change a price or provider cost that has not started; PriceInEffect for one that has."""
    unknown = set(fields) - set(CHANGEABLE)
    if unknown:
        raise ValueError(f"not a price setting: {', '.join(sorted(unknown))}")
    price_check_not_started(row=row, now=now)
    for name, value in fields.items():
        setattr(row, name, value)
    row.full_clean()
    row.save(update_fields=list(fields))
    return row


def _withdraw(row: Price | DeploymentPrice, now: datetime | None) -> None:
    price_check_not_started(row=row, now=now)
    row.delete()
