"""Writes on providers, public models and their deployments, the rules an edit of them must keep, and the
admin's connection test.

`provider_check`, `public_model_check` and `model_route_check` are the rules a person's edit must keep,
shared by the console's forms and the management API's serializers so both refuse the same things in the
same words. They raise Django's ValidationError keyed by field, which a ModelForm and DRF both show at that
field. The rules the models hold themselves (`full_clean`: a kind's options, fallbacks, header-name fields)
are shared by the create and update services below, which both the console and the API call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import models, transaction

from providers.adapters import ADAPTERS, needs_base_url
from providers.credentials import CredentialUnreadable, encrypt_credential, encrypt_headers
from providers.facade import provider_info
from providers.http import ProbeResult, probe_models
from providers.models import DEFAULT_KIND, HEADER_NAME, ModelRoute, Provider, PublicModel

BASE_URL_NEEDED = "This kind of provider needs a base URL."
# Seconds; a day is far beyond any sensible wait, and keeps timers away from float overflow.
TIMEOUT_SECONDS = (0.1, 86_400.0)
# The timeouts of a provider and of a public model, each checked against TIMEOUT_SECONDS.
PROVIDER_TIMEOUTS = ("connect_timeout", "read_timeout", "total_timeout")
MODEL_TIMEOUTS = ("timeout", "first_byte_timeout", "stall_timeout")
TIMEOUT_OUT_OF_RANGE = "Enter a number of seconds from 0.1 to 86400."
PRIORITY_RANGE = (-1_000_000, 1_000_000)
PRIORITY_OUT_OF_RANGE = "Enter a priority from -1000000 to 1000000."


# --- the rules --------------------------------------------------------------------------------------------------


def _refuse(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError(errors)


def _header_name_problems(headers: Iterable[str]) -> list[str]:
    problems = []
    for name in headers:
        try:
            HEADER_NAME(name)
        except ValidationError:
            problems.append(f"{name!r} is not a valid HTTP header name.")  # the name, never its value
    return problems


def _timeout_problems(timeouts: Mapping[str, float | None]) -> dict[str, list[str]]:
    """Timeouts given (None: not given, or none wanted) outside TIMEOUT_SECONDS; NaN is never within it."""
    low, high = TIMEOUT_SECONDS
    return {
        name: [TIMEOUT_OUT_OF_RANGE]
        for name, seconds in timeouts.items()
        if seconds is not None and not low <= seconds <= high
    }


def provider_check(
    *,
    kind: str | None,
    base_url: str | None,
    extra_headers: Mapping[str, str] | None = None,
    timeouts: Mapping[str, float | None] | None = None,
) -> None:
    """Refuse a provider that could not work: one without a base URL of a kind that has no address of its own,
    extra headers with a name no HTTP header may have, or a timeout out of range. Pass what the edit sets: an
    unknown kind (its own choices check says so) or headers of None (kept as stored) are not checked."""
    errors: dict[str, list[str]] = {}
    if kind in ADAPTERS and not base_url and needs_base_url(kind):
        errors["base_url"] = [BASE_URL_NEEDED]
    if problems := _header_name_problems(extra_headers or {}):
        errors["extra_headers"] = problems
    errors.update(_timeout_problems(timeouts or {}))
    _refuse(errors)


def public_model_check(*, timeouts: Mapping[str, float | None]) -> None:
    """Refuse a public model with a timeout out of range (None: none wanted)."""
    _refuse(_timeout_problems(timeouts))


def model_route_check(*, priority: int | None) -> None:
    """Refuse a deployment whose priority is out of range: it orders deployments, and far beyond any sensible
    order an integer would overflow the database's column."""
    low, high = PRIORITY_RANGE
    if priority is not None and not low <= priority <= high:
        _refuse({"priority": [PRIORITY_OUT_OF_RANGE]})


# --- providers --------------------------------------------------------------------------------------------------


def provider_create(
    *,
    name: str,
    kind: str = DEFAULT_KIND,
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


# --- public models and their deployments ------------------------------------------------------------------------


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


def _stored_values(row: models.Model) -> dict[str, Any]:
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


def public_model_set_deployments(*, model: PublicModel, deployments: Iterable[dict[str, Any]]) -> list[ModelRoute]:
    """Make `deployments` the model's whole set: one with an `id` of this model is changed, one without is
    added, and those left out are deleted. Saving row by row lets the change signals reload the snapshot; a row
    given as it is stored is not saved again, so it reloads nothing."""
    existing = {route.pk: route for route in model.deployments.all()}
    kept: list[ModelRoute] = []
    for given in deployments:
        fields = dict(given)
        route = existing.get(fields.pop("id", None) or 0) or ModelRoute(model=model)
        before = None if route.pk is None else _stored_values(route)
        for name, value in fields.items():
            setattr(route, name, value)
        if before is None or _stored_values(route) != before:
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
    return model_route_add(model=model, provider=provider, upstream_model=upstream_model)


def model_route_add(*, model: PublicModel, provider: Provider, upstream_model: str, **fields: Any) -> ModelRoute:
    """A new deployment of an existing public model; `fields` are the deployment's own (priority, weight, caps)."""
    route = ModelRoute(model=model, provider=provider, upstream_model=upstream_model, **fields)
    route.full_clean()
    route.save()
    return route


def model_route_update(*, route: ModelRoute, fields: dict[str, Any]) -> ModelRoute:
    """Change one deployment, or move it to another public model."""
    for name, value in fields.items():
        setattr(route, name, value)
    route.full_clean()
    route.save()
    return route
