"""The database's setup as a document, and as the YAML file `portico config export` writes.

Read for two uses: written out, where each secret becomes a `${ENV_VAR}`
reference named after its owner (never its value), and compared with a file
by `apply`, which needs the stored secrets themselves to tell whether one
changed.

Left out, as not the file's to hold: API keys and everything set on one key
(keys are secrets kept only hashed), tenants' people (their admins invite and
remove them in the portal), the ledger, the providers and models a
model-list source makes (its refresh makes them again) and the source
PORTICO_MODEL_LIST_URL configures (the environment does). Rows come in a fixed
order (names, then priorities and times), so two databases with the same setup
give the same file.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Prefetch, QuerySet

from billing.models import Budget, DeploymentPrice, Price, RateLimit
from gateway.setup_config.files import dump, reference
from gateway.setup_config.schema import (
    ALERT_CHANNEL,
    BUDGET,
    DEPLOYMENT,
    MODEL,
    PRICE,
    PROVIDER,
    RATE_LIMIT,
    SECTIONS,
    SOURCE,
    TENANT,
    Document,
    Entry,
    Field,
    Shape,
    document_raw,
    number_repeats,
)
from notifications.models import AlertChannel, AlertEvent
from providers.credentials import CredentialUnreadable, decrypt_credential, decrypt_headers
from providers.facade import CAPABILITIES
from providers.model_lists.services import SETTINGS_SOURCE
from providers.models import ModelListSource, ModelRoute, Provider, PublicModel
from tenants.models import Tenant

# Stands for a stored secret this process cannot decrypt (PORTICO_CREDENTIAL_KEY changed): equal to no value
# a file can give, so applying a file sets the secret again.
UNREADABLE = "\x00unreadable"
ALERT_EVENTS = tuple(AlertEvent.values)  # a channel's events are written in this order, as a file's are read

HEADER = """\
# Portico's setup, as `portico config export` wrote it. `portico config apply` makes a database match it
# (docs/setup-as-code.md). Secrets are ${ENV_VAR} references, read from the environment when it is applied;
# API keys and the usage ledger are never part of it.
"""


def export_text() -> str:
    """The whole setup as YAML, secrets as references."""
    document = read_setup()
    return dump(document_raw(document, SecretNames(document).reference), header=HEADER)


def read_setup() -> Document:
    """Every section as stored now, secrets decrypted."""
    return Document(
        {
            "providers": [_entry(PROVIDER, _provider_values(p)) for p in _providers()],
            "model_list_sources": [_entry(SOURCE, _source_values(s)) for s in _sources()],
            "models": [_model(model) for model in models_in_setup()],
            "tenants": [_tenant(tenant) for tenant in _tenants()],
            "alert_channels": number_repeats(
                [_entry(ALERT_CHANNEL, _channel_values(c)) for c in alert_channels()], ALERT_CHANNEL
            ),
        }
    )


def alert_channels() -> QuerySet[AlertChannel]:
    """In the order their keys are numbered: by name, the oldest first ("ops", "ops #2")."""
    return AlertChannel.objects.select_related("tenant").order_by("name", "pk")


def _channel_values(channel: AlertChannel) -> dict[str, Any]:
    values = _fields(channel, ALERT_CHANNEL, "tenant", "emails", "events", "secret")
    values["tenant"] = channel.tenant.slug if channel.tenant is not None else None
    values["emails"] = sorted(channel.emails)
    values["events"] = [event for event in ALERT_EVENTS if event in channel.events]
    values["secret"] = _secret(channel.secret_encrypted, decrypt_credential) if channel.secret_encrypted else ""
    return values


def models_in_setup() -> QuerySet[PublicModel]:
    """The public models a setup holds: all but those a model-list source manages."""
    return (
        PublicModel.objects.filter(list_entry__isnull=True)
        .prefetch_related(
            Prefetch("prices", queryset=Price.objects.order_by("effective_from")),
            Prefetch("deployments", queryset=ModelRoute.objects.select_related("provider")),
            Prefetch("deployments__costs", queryset=DeploymentPrice.objects.order_by("effective_from")),
        )
        .order_by("public_id")
    )


def ordered_deployments(model: PublicModel) -> list[ModelRoute]:
    """A model's deployments in the file's order; `apply` meets them in the same one."""
    return sorted(model.deployments.all(), key=lambda r: (r.priority, r.provider.name, r.upstream_model, r.pk))


def deployment_entries(model: PublicModel) -> list[tuple[Entry, ModelRoute]]:
    routes = ordered_deployments(model)
    entries = number_repeats([_deployment(route) for route in routes], DEPLOYMENT)
    return list(zip(entries, routes, strict=True))


def _entry(shape: Shape, values: dict[str, Any], children: dict[str, list[Entry]] | None = None) -> Entry:
    return Entry(path=shape.label, key=shape.key(values), values=values, children=children or {})


def _fields(row: Any, shape: Shape, *skipped: str) -> dict[str, Any]:
    return {spec.name: getattr(row, spec.name) for spec in shape.fields if spec.name not in skipped}


def _secret(token: str, decrypt: Any) -> Any:
    try:
        return decrypt(token)
    except CredentialUnreadable:
        return UNREADABLE


def _providers() -> QuerySet[Provider]:
    return Provider.objects.filter(list_source__isnull=True).order_by("name")


def _provider_values(provider: Provider) -> dict[str, Any]:
    values = _fields(provider, PROVIDER, "credential", "extra_headers")
    values["credential"] = _secret(provider.credential_encrypted, decrypt_credential)
    values["extra_headers"] = _secret(provider.extra_headers_encrypted, decrypt_headers)
    return values


def _sources() -> QuerySet[ModelListSource]:
    return ModelListSource.objects.exclude(name=SETTINGS_SOURCE).order_by("name")


def _source_values(source: ModelListSource) -> dict[str, Any]:
    values = _fields(source, SOURCE, "credential")
    values["credential"] = _secret(source.credential_encrypted, decrypt_credential)
    return values


def _prices(rows: Any) -> list[Entry]:
    return [_entry(PRICE, _fields(row, PRICE)) for row in rows]


def _deployment(route: ModelRoute) -> Entry:
    values = _fields(route, DEPLOYMENT, "provider")
    values["provider"] = route.provider.name
    return _entry(DEPLOYMENT, values, {"costs": _prices(route.costs.all())})


def _model(model: PublicModel) -> Entry:
    values = _fields(model, MODEL, "capabilities")
    values["capabilities"] = [name for name in CAPABILITIES if getattr(model, f"supports_{name}")]
    children = {
        "prices": _prices(model.prices.all()),
        "deployments": [entry for entry, _route in deployment_entries(model)],
    }
    return _entry(MODEL, values, children)


def _tenants() -> QuerySet[Tenant]:
    return Tenant.objects.prefetch_related(
        "allowed_models",
        Prefetch("rate_limits", queryset=RateLimit.objects.order_by("model")),
        Prefetch("budgets", queryset=Budget.objects.all()),
    ).order_by("slug")


def _tenant(tenant: Tenant) -> Entry:
    values = _fields(tenant, TENANT, "allowed_models")
    models = sorted(model.public_id for model in tenant.allowed_models.all())
    values["allowed_models"] = models if tenant.models_restricted else None
    children = {
        "rate_limits": [_entry(RATE_LIMIT, _fields(row, RATE_LIMIT)) for row in tenant.rate_limits.all()],
        "budget": [_entry(BUDGET, _fields(row, BUDGET)) for row in tenant.budgets.all()],
    }
    return _entry(TENANT, values, children)


class SecretNames:
    """The environment variable each secret of a document is written as: PORTICO_PROVIDER_<NAME>_CREDENTIAL,
    PORTICO_PROVIDER_<NAME>_HEADER_<HEADER>, PORTICO_MODEL_LIST_<NAME>_CREDENTIAL. Two owners whose names make
    the same variable get _2, _3... in the order they are written, so the names are the same at every export."""

    def __init__(self, document: Document) -> None:
        self._names: dict[tuple[str, str, str], str] = {}
        taken: set[str] = set()
        for section in SECTIONS:
            for entry in document.entries(section):
                for wanted, owner in self._wanted(section, entry):
                    name, number = wanted, 2
                    while name in taken:
                        name, number = f"{wanted}_{number}", number + 1
                    taken.add(name)
                    self._names[owner] = name

    @staticmethod
    def _wanted(section: str, entry: Entry) -> list[tuple[str, tuple[str, str, str]]]:
        if section == "providers":
            stem = f"PORTICO_PROVIDER_{_variable_part(entry.key)}"
            names = [(f"{stem}_CREDENTIAL", (section, entry.key, "credential"))]
            headers = entry.values["extra_headers"] if isinstance(entry.values["extra_headers"], dict) else {}
            return names + [
                (f"{stem}_HEADER_{_variable_part(header)}", (section, entry.key, f"header:{header}"))
                for header in sorted(headers)
            ]
        if section == "model_list_sources":
            return [(f"PORTICO_MODEL_LIST_{_variable_part(entry.key)}_CREDENTIAL", (section, entry.key, "credential"))]
        if section == "alert_channels":
            return [(f"PORTICO_ALERT_{_variable_part(entry.key)}_SECRET", (section, entry.key, "secret"))]
        return []

    def reference(self, section: str, entry: Entry, spec: Field) -> Any:
        value = entry.values[spec.name]
        if spec.name == "extra_headers":
            if value == UNREADABLE:
                return {}  # nothing can be said of headers that cannot be read, not even their names
            return {
                header: reference(self._names[(section, entry.key, f"header:{header}")]) for header in sorted(value)
            }
        return reference(self._names[(section, entry.key, spec.name)]) if value else ""


def _variable_part(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "UNNAMED"
