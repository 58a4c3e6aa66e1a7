"""A source's listed models, made into providers, public models, deployments and prices.

Each listed model gets, on a provider of the source's for its base path and
kind, a public model of its id with one deployment of the same upstream name,
and a tenant price and a provider cost from the list's prices:

    new to the source      -> added: model, deployment, prices, and the entry that marks them the source's
    listed again           -> re-enabled: the model the source disabled is active again
    family, handle, price  -> changed: the rows follow; a price change adds rows effective now
    no longer listed       -> disabled: the model is made inactive, never deleted
    listed, but refused    -> left as the last good list made it (the entry's error is recorded)

A public model of the same id that the source does not manage (an operator
made it, or another source) is left untouched and reported as a conflict.
Every entry is applied in a savepoint of its own, so one that fails leaves
the others applied. Rows are saved one by one through the ORM: the change
signals reload every process's snapshot once the transaction commits.

Prices belong to billing, which sits above providers and may not be imported
from here; they are written through the relations billing declares on these
models (`PublicModel.prices`, `ModelRoute.costs`), as billing's `price_add`
and `deployment_price_add` would write them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from providers.credentials import CredentialUnreadable, decrypt_credential, encrypt_credential
from providers.model_lists.entries import EntryError, ListedModel
from providers.model_lists.handles import first_segment, join
from providers.models import ModelListEntry, ModelListProvider, ModelListSource, ModelRoute, Provider, PublicModel

DIFF_KEYS = ("added", "changed", "disabled", "reenabled")
_NAME_MAX = 200  # Provider.name


class Conflict(Exception):
    """A model of the listed id exists and is not the source's."""


@dataclass
class Applied:
    diff: dict[str, list[str]] = field(default_factory=lambda: {key: [] for key in DIFF_KEYS})
    errors: list[EntryError] = field(default_factory=list)

    def note(self, key: str, model_id: str) -> None:
        self.diff[key].append(model_id)


def listed_models_apply(
    *, source: ModelListSource, listed: Sequence[ListedModel], refused: Iterable[str] = (), now: datetime
) -> Applied:
    """Apply what the list says now; the source's row is locked meanwhile, so two refreshes take turns.
    Models named by `refused` entries (the list still names them, wrongly) keep their last good state."""
    applied = Applied()
    with transaction.atomic():
        source = ModelListSource.objects.select_for_update().get(pk=source.pk)
        providers = _Providers(source)
        entries = {
            entry.model_version: entry for entry in source.entries.select_related("model", "deployment__provider")
        }
        for position, item in enumerate(listed, start=1):
            try:
                # A provider is kept even when its first entry fails: the next entry of its base path uses it.
                with transaction.atomic():
                    provider = providers.get(item.base_path, item.kind)
                with transaction.atomic():
                    for key in _apply_one(source, provider, entries.get(item.model_id), item, now):
                        applied.note(key, item.model_id)
            except Conflict as exc:
                applied.errors.append(EntryError(position, item.model_id, str(exc)))
            except (ValidationError, DatabaseError) as exc:
                applied.errors.append(EntryError(position, item.model_id, f"not applied: {_why(exc)}"))
        ids = {item.model_id for item in listed} | set(refused)
        for model_id, entry in entries.items():
            if entry.listed and model_id not in ids:
                _disable(entry)
                applied.note("disabled", model_id)
    return applied


def _apply_one(
    source: ModelListSource, provider: Provider, entry: ModelListEntry | None, item: ListedModel, now: datetime
) -> list[str]:
    if entry is None:
        _add(source, provider, item, now)
        return ["added"]
    keys = []
    if not entry.listed:
        entry.listed = True
        entry.model.active = True
        entry.model.save(update_fields=["active"])
        keys.append("reenabled")
    if _follow(entry, provider, item, now):
        keys.append("changed")
    entry.last_listed_at = now
    entry.save()
    return keys


def _add(source: ModelListSource, provider: Provider, item: ListedModel, now: datetime) -> None:
    if PublicModel.objects.filter(public_id=item.model_id).exists():
        raise Conflict("a public model of this id exists and is not managed by this source: left as it is")
    model = PublicModel(public_id=item.model_id, owned_by=_owner(item), model_family=item.family)
    model.full_clean()
    model.save()
    deployment = _deploy(model, provider, item)
    _price(model, deployment, item, now)
    ModelListEntry.objects.create(
        source=source,
        model_version=item.model_id,
        model=model,
        deployment=deployment,
        handle=item.handle,
        model_family=item.family,
        input_per_million=item.input_per_million,
        output_per_million=item.output_per_million,
        first_listed_at=now,
        last_listed_at=now,
    )


def _follow(entry: ModelListEntry, provider: Provider, item: ListedModel, now: datetime) -> bool:
    """Bring the source's rows in line with the entry; whether anything changed."""
    changed = False
    model = entry.model
    if (model.owned_by, model.model_family) != (_owner(item), item.family):
        model.owned_by, model.model_family = _owner(item), item.family
        model.full_clean()
        model.save(update_fields=["owned_by", "model_family"])
        changed = True
    deployment, made = entry.deployment, False
    if deployment is None:  # deleted by an operator: the list still names it, so it is made again
        deployment = entry.deployment = _deploy(model, provider, item)
        made = changed = True
    elif (deployment.provider_id, deployment.upstream_model) != (provider.pk, item.model_id):
        deployment.provider, deployment.upstream_model = provider, item.model_id
        deployment.full_clean()
        deployment.save(update_fields=["provider", "upstream_model"])
        changed = True
    repriced = (entry.input_per_million, entry.output_per_million) != item.prices
    if repriced:
        model.prices.create(effective_from=now, **_per_million(item))  # type: ignore[attr-defined]
        entry.input_per_million, entry.output_per_million = item.prices
        changed = True
    if repriced or made:  # a deployment made again has no cost of its own yet
        deployment.costs.create(effective_from=now, **_per_million(item))  # type: ignore[attr-defined]
    if (entry.handle, entry.model_family) != (item.handle, item.family):
        entry.handle, entry.model_family = item.handle, item.family
        changed = True
    return changed


def _disable(entry: ModelListEntry) -> None:
    entry.listed = False
    entry.save(update_fields=["listed"])
    if entry.model.active:
        entry.model.active = False
        entry.model.save(update_fields=["active"])


def _deploy(model: PublicModel, provider: Provider, item: ListedModel) -> ModelRoute:
    deployment = ModelRoute(model=model, provider=provider, upstream_model=item.model_id)
    deployment.full_clean()
    deployment.save()
    return deployment


def _price(model: PublicModel, deployment: ModelRoute, item: ListedModel, now: datetime) -> None:
    """The tenant price and the provider cost, both the list's, from now on; earlier ones stay as history."""
    model.prices.create(effective_from=now, **_per_million(item))  # type: ignore[attr-defined]
    deployment.costs.create(effective_from=now, **_per_million(item))  # type: ignore[attr-defined]


def _per_million(item: ListedModel) -> dict[str, Decimal]:
    return {"input_per_million": item.input_per_million, "output_per_million": item.output_per_million}


def _owner(item: ListedModel) -> str:
    return (item.family or first_segment(item.handle))[:100]


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return "the database refused it"


class _Providers:
    """The source's providers by base path and kind: made on first need, kept in line with the source."""

    def __init__(self, source: ModelListSource) -> None:
        self.source = source
        self.base_url = source.handle_base_url
        self.credential = decrypt_credential(source.credential_encrypted)
        self._known = {(row.base_path, row.kind): row.provider for row in source.providers.select_related("provider")}
        self._checked: set[int] = set()

    def get(self, base_path: str, kind: str) -> Provider:
        provider = self._known.get((base_path, kind))
        if provider is None:
            provider = self._known[base_path, kind] = self._make(base_path, kind)
        elif provider.pk not in self._checked:
            self._align(provider, base_path)
        self._checked.add(provider.pk)
        return provider

    def _make(self, base_path: str, kind: str) -> Provider:
        provider = Provider(
            name=self._free_name(f"{self.source.name} {kind} {base_path}"),
            kind=kind,
            base_url=join(self.base_url, base_path),
            credential_encrypted=encrypt_credential(self.credential),
        )
        provider.full_clean()
        provider.save()
        ModelListProvider.objects.create(source=self.source, provider=provider, base_path=base_path, kind=kind)
        return provider

    def _align(self, provider: Provider, base_path: str) -> None:
        """Follow the source's base URL and credential (compared in clear: each encryption differs)."""
        changes: dict[str, Any] = {}
        if provider.base_url != join(self.base_url, base_path):
            changes["base_url"] = join(self.base_url, base_path)
        try:
            current = decrypt_credential(provider.credential_encrypted)
        except CredentialUnreadable:
            current = None
        if current != self.credential:
            changes["credential_encrypted"] = encrypt_credential(self.credential)
        if changes:
            for name, value in changes.items():
                setattr(provider, name, value)
            provider.full_clean()
            provider.save()

    def _free_name(self, wanted: str) -> str:
        wanted = wanted[:_NAME_MAX]
        name, number = wanted, 1
        while Provider.objects.filter(name=name).exists():
            number += 1
            suffix = f" ({number})"
            name = wanted[: _NAME_MAX - len(suffix)] + suffix
        return name
