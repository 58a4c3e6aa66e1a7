"""Writes on providers and model routes, and the admin's connection test."""

from __future__ import annotations

from asgiref.sync import async_to_sync

from providers.credentials import CredentialUnreadable, encrypt_credential, encrypt_headers
from providers.facade import provider_info
from providers.http import ProbeResult, probe_models
from providers.models import ModelRoute, Provider


def provider_create(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    credential: str = "",
    credential_header: str = "",
    extra_headers: dict[str, str] | None = None,
) -> Provider:
    provider = Provider(name=name, kind=kind, base_url=base_url, credential_header=credential_header)
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


def model_route_create(
    *, provider: Provider, public_id: str, upstream_model: str, owned_by: str = "portico"
) -> ModelRoute:
    route = ModelRoute(provider=provider, public_id=public_id, upstream_model=upstream_model, owned_by=owned_by)
    route.full_clean()
    route.save()
    return route
