"""Writes on providers, public models and their deployments, and the admin's connection test."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

from providers.credentials import CredentialUnreadable, encrypt_credential, encrypt_headers
from providers.facade import provider_info
from providers.http import ProbeResult, probe_models
from providers.models import ModelRoute, Provider, PublicModel


def provider_create(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    credential: str = "",
    credential_header: str = "",
    extra_headers: dict[str, str] | None = None,
    **fields: Any,
) -> Provider:
    provider = Provider(name=name, kind=kind, base_url=base_url, credential_header=credential_header, **fields)
    provider_set_credential(provider=provider, credential=credential)
    provider_set_extra_headers(provider=provider, headers=extra_headers or {})
    provider.full_clean()
    provider.save()
    return provider


def provider_set_credential(*, provider: Provider, credential: str) -> None:
    """Encrypt a new credential onto an unsaved change; an empty one removes the stored credential."""
    provider.credential_encrypted = encrypt_credential(credential)


def provider_set_extra_headers(*, provider: Provider, headers: dict[str, str]) -> None:
    """Encrypt a new set of extra headers onto an unsaved change, replacing the stored set; empty removes it."""
    provider.extra_headers_encrypted = encrypt_headers(headers)


def provider_test_connection(*, provider: Provider) -> ProbeResult:
    """Call the provider's models endpoint once, as it is saved now, and say what happened."""
    try:
        info = provider_info(provider)
    except CredentialUnreadable:
        return ProbeResult(False, "the stored credential cannot be decrypted with this PORTICO_CREDENTIAL_KEY")
    # The admin is synchronous; the probe shares the hot path's async HTTP layer.
    return async_to_sync(probe_models)(info)


def provider_update(
    *,
    provider: Provider,
    fields: dict[str, Any],
    credential: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Provider:
    """Change a provider; a credential or headers of None are kept, empty ones removed."""
    for name, value in fields.items():
        setattr(provider, name, value)
    if credential is not None:
        provider_set_credential(provider=provider, credential=credential)
    if extra_headers is not None:
        provider_set_extra_headers(provider=provider, headers=extra_headers)
    provider.full_clean()
    provider.save()
    return provider


@transaction.atomic
def public_model_create(*, public_id: str, deployments: Iterable[dict[str, Any]] = (), **fields: Any) -> PublicModel:
    """A public model and its deployments, each a dict of ModelRoute fields (provider, upstream_model, ...)."""
    model = PublicModel(public_id=public_id, **fields)
    model.full_clean()
    model.save()
    public_model_set_deployments(model=model, deployments=deployments)
    return model


@transaction.atomic
def public_model_update(
    *, model: PublicModel, fields: dict[str, Any], deployments: Iterable[dict[str, Any]] | None = None
) -> PublicModel:
    """Change a public model; with `deployments`, they become its whole set (see public_model_set_deployments)."""
    for name, value in fields.items():
        setattr(model, name, value)
    model.full_clean()
    model.save()
    if deployments is not None:
        public_model_set_deployments(model=model, deployments=deployments)
    return model


def public_model_set_deployments(*, model: PublicModel, deployments: Iterable[dict[str, Any]]) -> list[ModelRoute]:
    """Make `deployments` the model's whole set: one with an `id` of this model is changed, one without is
    added, and those left out are deleted. Saving row by row lets the change signals reload the snapshot."""
    existing = {route.pk: route for route in model.deployments.all()}
    kept: list[ModelRoute] = []
    for given in deployments:
        fields = dict(given)
        route = existing.get(fields.pop("id", None) or 0) or ModelRoute(model=model)
        for name, value in fields.items():
            setattr(route, name, value)
        route.full_clean()
        route.save()
        kept.append(route)
    for route in existing.values():
        if route not in kept:
            route.delete()
    return kept


def model_route_create(
    *,
    provider: Provider,
    public_id: str,
    upstream_model: str,
    owned_by: str = "portico",
    **fields: Any,
) -> ModelRoute:
    """A deployment of `public_id`, creating the public model (with `owned_by` and `fields`) if it is new."""
    model = PublicModel.objects.filter(public_id=public_id).first()
    if model is None:
        model = public_model_create(public_id=public_id, owned_by=owned_by, **fields)
    route = ModelRoute(model=model, provider=provider, upstream_model=upstream_model)
    route.full_clean()
    route.save()
    return route
