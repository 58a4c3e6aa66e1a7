"""Deleting providers, public models and model-list sources.

The ledger names providers, models and deployments by value, so deleting one
loses no accounting; tenants' allowlists and prices pointing at a public model
go with it. Where a deletion would lose more, `active` (or a source's
`enabled`) switches the row off instead.
"""

from __future__ import annotations

from django.db.models import ProtectedError

from providers.models import ModelListSource, Provider, PublicModel


class ProviderInUse(Exception):
    """The provider still serves deployments."""


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider that serves no deployment; ProviderInUse for one that does."""
    try:
        provider.delete()
    except ProtectedError:
        raise ProviderInUse(provider.name) from None


def public_model_delete(*, model: PublicModel) -> None:
    """Delete a public model with its deployments and prices."""
    model.delete()


def model_list_source_delete(*, source: ModelListSource) -> None:
    """Delete a source; the providers and models it made stay, no longer managed by it."""
    source.delete()
