from __future__ import annotations

from itertools import count
from typing import Any

from providers.credentials import encrypt_credential, encrypt_headers
from providers.facade import ProviderInfo
from providers.models import ModelRoute, Provider, PublicModel

_seq = count(1)


def make_provider(
    *,
    kind: str = "mock",
    base_url: str = "",
    credential: str = "",
    extra_headers: dict[str, str] | None = None,
    **fields: Any,
) -> Provider:
    fields.setdefault("name", f"provider-{next(_seq)}")
    return Provider.objects.create(
        kind=kind,
        base_url=base_url,
        credential_encrypted=encrypt_credential(credential),
        extra_headers_encrypted=encrypt_headers(extra_headers or {}),
        **fields,
    )


_DEPLOYMENT_FIELDS = {field.name for field in ModelRoute._meta.get_fields()} - {"model", "provider"}


def make_model(*, public_id: str | None = None, **fields: Any) -> PublicModel:
    return PublicModel.objects.create(public_id=public_id or f"model-{next(_seq)}", **fields)


def make_route(*, provider: Provider | None = None, public_id: str | None = None, **fields: Any) -> ModelRoute:
    """A deployment of `public_id` on `provider`. The public model is made on first use, with the fields
    that belong to it (capabilities, metadata, routing); a later call for the same id adds a deployment."""
    provider = provider or make_provider()
    public_id = public_id or f"model-{next(_seq)}"
    fields.setdefault("upstream_model", public_id)
    deployment = {name: value for name, value in fields.items() if name in _DEPLOYMENT_FIELDS}
    model = PublicModel.objects.filter(public_id=public_id).first()
    if model is None:
        model = make_model(public_id=public_id, **{k: v for k, v in fields.items() if k not in deployment})
        # Created together, so the deployment's time is the model's (what /v1/models reports).
        deployment.setdefault("created_at", model.created_at)
    return ModelRoute.objects.create(model=model, provider=provider, **deployment)


UPSTREAM_CREDENTIAL = "sk-proj-UPSTREAMsecret1234567890"


def make_provider_info(**fields: Any) -> ProviderInfo:
    """A frozen provider for tests that need no database row: an OpenAI-kind upstream with a credential."""
    defaults: dict[str, Any] = {
        "id": 1,
        "name": "openai",
        "kind": "openai",
        "base_url": "http://upstream.test/v1",
        "credential": UPSTREAM_CREDENTIAL,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "total_timeout": 3.0,
        "extra_headers": {"OpenAI-Organization": "org-portico"},
        "version": 1.0,
    }
    return ProviderInfo(**{**defaults, **fields})
