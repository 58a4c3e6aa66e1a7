"""Withdrawing a price or provider cost that has not started yet.

Prices are a history: the snapshot charges each request at the latest row whose
`effective_from` has passed (billing.facade), so a row in effect is never edited
or deleted: a change is a new row from a later time (billing.services.price_add,
deployment_price_add). A row scheduled for the future has charged nothing yet
and may be withdrawn.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from billing.models import DeploymentPrice, Price


class PriceInEffect(Exception):
    """The row has started: it is history, kept as it is."""


def price_in_effect(*, row: Price | DeploymentPrice, now: datetime | None = None) -> bool:
    return row.effective_from <= (now or timezone.now())


def price_withdraw(*, price: Price, now: datetime | None = None) -> None:
    """Delete a tenant price that has not started; PriceInEffect for one that has."""
    _withdraw(price, now)


def deployment_price_withdraw(*, cost: DeploymentPrice, now: datetime | None = None) -> None:
    """Delete a provider cost that has not started; PriceInEffect for one that has."""
    _withdraw(cost, now)


def _withdraw(row: Price | DeploymentPrice, now: datetime | None) -> None:
    if price_in_effect(row=row, now=now):
        raise PriceInEffect(f"The price from {row.effective_from.isoformat()} is in effect: add a later one instead.")
    row.delete()
