"""A setup file's shape: its sections, their fields and defaults, and where in the file each problem is.

    version: 1
    providers:           by name       credential and extra header values are secrets (${ENV_VAR})
    model_list_sources:  by name       the credential is a secret
    models:              by public_id  prices (by effective_from), deployments (by provider/upstream_model)
                                       and each deployment's costs (by effective_from)
    tenants:             by slug       rate limits (by model; "" is every model) and one budget
    alert_channels:      by name       the webhook's signing secret is a secret; a tenant's by its slug,
                                       the operators' with none

A section left out of a file is not the file's to manage: applying it changes
nothing there. In an entry, a field left out takes the value a new row gets, so
a file says all there is to say about what it lists. A problem names its place:
`models[3].deployments[0].provider: unknown provider "opnai"`.

API keys and the ledger are not part of a setup (keys are secrets Portico keeps
only hashed), so neither are the rate limits and budgets set on single keys.
Nor are the people of a tenant (users and their memberships): a tenant's admins
invite and remove them in the portal, which a file applied later would undo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import models
from django.db.models import Model

from billing.models import Budget
from gateway.setup_config.files import escape
from gateway.setup_config.values import (
    Problem,
    amount_text,
    anything,
    choice,
    flag,
    headers,
    instant,
    instant_text,
    kind_of,
    mapping,
    money,
    name,
    names,
    plain,
    real,
    sorted_json,
    text,
    whole,
)
from notifications.models import AlertChannel, AlertEvent
from notifications.services import SECRET_MIN_LENGTH, alert_channel_problems
from providers.adapters import ADAPTERS, kind_choices
from providers.adapters.kind_options import InvalidOptions
from providers.facade import CAPABILITIES
from providers.model_lists.handles import default_handle_kinds
from providers.models import ModelListSource, ModelRoute, Provider, PublicModel
from providers.options import ENSEMBLES, RETRY_CLASSES, STRATEGIES, default_retry_on
from tenants.models import QUEUE_MAX_WAIT_CEILING, QueueMode, Tenant

VERSION = 1


class ConfigInvalid(Exception):
    """The file cannot be applied; each problem starts with its place in the file."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- shapes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    parse: Callable[[Any], Any]
    default: Callable[[], Any] | None = None  # None: the file must give it
    dump: Callable[[Any], Any] = plain
    secret: bool = False


@dataclass(frozen=True)
class Shape:
    label: str
    fields: tuple[Field, ...]
    key: Callable[[Mapping[str, Any]], str]
    children: tuple[Child, ...] = ()
    # What `--prune` does to a row of this shape the file leaves out: deactivate (active: false), disable
    # (enabled: false), delete, or withdraw (a price: deleted if it has not started, else kept as history).
    retire: str = "delete"
    repeats: bool = False  # two entries may have the same key (deployments): the second is "key #2"
    # Problems between fields, once each has parsed: "field: message" (a provider's options suit its kind).
    check: Callable[[Mapping[str, Any]], list[str]] | None = None


@dataclass(frozen=True)
class Child:
    name: str
    shape: Shape
    single: bool = False  # one mapping or null (a tenant's budget) rather than a list


@dataclass
class Entry:
    """One row of a setup, from a file (with its place in it) or from the database."""

    path: str
    key: str
    values: dict[str, Any]
    children: dict[str, list[Entry]] = field(default_factory=dict)


@dataclass
class Document:
    """The sections of a setup; None for one the file leaves out."""

    sections: dict[str, list[Entry] | None]

    def entries(self, section: str) -> list[Entry]:
        return self.sections.get(section) or []


def _model_default(model: type[Model], field_name: str) -> Any:
    column = model._meta.get_field(field_name)
    assert isinstance(column, models.Field)  # a column, not a relation's other end
    return column.get_default()


def _default(model: type[Model], field_name: str) -> Callable[[], Any]:
    return lambda: _model_default(model, field_name)


def _none() -> None:
    return None


def _capabilities() -> list[str]:
    return [name for name in CAPABILITIES if _model_default(PublicModel, f"supports_{name}")]


# As billing.models.PerMillion and Budget.amount hold them.
_PER_MILLION = money(digits=12, places=6)
_OPTIONAL_PER_MILLION = money(digits=12, places=6, null=True)
PRICE = Shape(
    "price",
    (
        Field("effective_from", instant, dump=instant_text),
        Field("input_per_million", _PER_MILLION, lambda: Decimal(0), amount_text),
        Field("output_per_million", _PER_MILLION, lambda: Decimal(0), amount_text),
        Field("cached_input_per_million", _OPTIONAL_PER_MILLION, _none, amount_text),
    ),
    key=lambda values: instant_text(values["effective_from"]),
    retire="withdraw",
)
_CAP = whole(minimum=1, null=True)
DEPLOYMENT = Shape(
    "deployment",
    (
        Field("provider", name),
        Field("upstream_model", name),
        Field("priority", whole(minimum=-1_000_000, maximum=1_000_000), _default(ModelRoute, "priority")),
        Field("weight", whole(minimum=0), _default(ModelRoute, "weight")),
        Field("max_requests_per_minute", _CAP, _none),
        Field("max_tokens_per_minute", _CAP, _none),
        Field("max_in_flight", _CAP, _none),
        Field("active", flag, _default(ModelRoute, "active")),
    ),
    key=lambda values: f"{values['provider']}/{values['upstream_model']}",
    children=(Child("costs", PRICE),),
    retire="deactivate",
    repeats=True,
)
_TIMEOUT = real(minimum=0.1)


def _options_problems(values: Mapping[str, Any]) -> list[str]:
    try:
        ADAPTERS[values["kind"]].clean_options(values["options"])
    except InvalidOptions as exc:
        return [f"options: {exc}"]
    return []


_OPTIONAL_TIMEOUT = real(minimum=0.1, null=True)
PROVIDER = Shape(
    "provider",
    (
        Field("name", name),
        Field("kind", choice(kind for kind, _label in kind_choices())),
        Field("base_url", text, _default(Provider, "base_url")),
        Field("credential", text, lambda: "", secret=True),
        Field("credential_header", text, _default(Provider, "credential_header")),
        Field("extra_headers", headers, dict, secret=True),
        Field("connect_timeout", _TIMEOUT, _default(Provider, "connect_timeout")),
        Field("read_timeout", _TIMEOUT, _default(Provider, "read_timeout")),
        Field("total_timeout", _TIMEOUT, _default(Provider, "total_timeout")),
        Field("api_version", text, _default(Provider, "api_version")),
        Field("accepts_stream_options", flag, _default(Provider, "accepts_stream_options")),
        Field("accepts_max_completion_tokens", flag, _default(Provider, "accepts_max_completion_tokens")),
        Field("serves_completions", flag, _default(Provider, "serves_completions")),
        Field("exact_shapes", flag, _default(Provider, "exact_shapes")),
        Field("options", mapping, dict, sorted_json),
        Field("active", flag, _default(Provider, "active")),
    ),
    key=lambda values: values["name"],
    retire="deactivate",
    check=_options_problems,
)
SOURCE = Shape(
    "model-list source",
    (
        Field("name", name),
        Field("url", name),
        Field("base_url", text, _default(ModelListSource, "base_url")),
        Field("credential", text, lambda: "", secret=True),
        Field("refresh_interval", whole(minimum=10, maximum=31_536_000), _default(ModelListSource, "refresh_interval")),
        Field("enabled", flag, _default(ModelListSource, "enabled")),
        Field("handle_kinds", anything, default_handle_kinds, sorted_json),
    ),
    key=lambda values: values["name"],
    retire="disable",
)
MODEL = Shape(
    "model",
    (
        Field("public_id", name),
        Field("owned_by", text, _default(PublicModel, "owned_by")),
        Field("model_family", text, _default(PublicModel, "model_family")),
        Field("context_window", whole(minimum=0, null=True), _none),
        Field("max_output_tokens", whole(minimum=0, null=True), _none),
        Field("capabilities", names(choices=CAPABILITIES, ordered=False), _capabilities),
        Field("strategy", choice(STRATEGIES), _default(PublicModel, "strategy")),
        Field("fallbacks", names(), list),
        Field("retry_on", names(choices=RETRY_CLASSES), default_retry_on),
        Field("mid_stream_recovery", flag, _default(PublicModel, "mid_stream_recovery")),
        Field("ensemble", choice(("", *ENSEMBLES)), _default(PublicModel, "ensemble")),
        Field("timeout", _OPTIONAL_TIMEOUT, _none),
        Field("first_byte_timeout", _OPTIONAL_TIMEOUT, _none),
        Field("stall_timeout", _OPTIONAL_TIMEOUT, _none),
        Field("active", flag, _default(PublicModel, "active")),
    ),
    key=lambda values: values["public_id"],
    children=(Child("prices", PRICE), Child("deployments", DEPLOYMENT)),
    retire="deactivate",
)
_LIMIT = whole(minimum=0, null=True)
RATE_LIMIT = Shape(
    "rate limit",
    (
        Field("model", text, lambda: ""),
        Field("requests_per_minute", _LIMIT, _none),
        Field("tokens_per_minute", _LIMIT, _none),
        Field("max_concurrent", _LIMIT, _none),
    ),
    key=lambda values: values["model"] or "every model",
)
BUDGET = Shape(
    "budget",
    (
        Field("period", choice(Budget.Period.values), _default(Budget, "period")),
        Field("amount", money(digits=14, places=4), dump=amount_text),
        Field("soft_limit_percent", whole(minimum=1, maximum=100), _default(Budget, "soft_limit_percent")),
    ),
    key=lambda values: "budget",
)
TENANT = Shape(
    "tenant",
    (
        Field("slug", name),
        Field("name", name),
        Field("active", flag, _default(Tenant, "active")),
        Field("allowed_models", names(null=True, ordered=False), _none),
        Field("describe_models", flag, _default(Tenant, "describe_models")),
        Field("cors_origins", names(ordered=False), list),
        Field("queue_mode", choice(QueueMode.values), _default(Tenant, "queue_mode")),
        Field("queue_max_wait", whole(minimum=1, maximum=QUEUE_MAX_WAIT_CEILING), _default(Tenant, "queue_max_wait")),
        Field("queue_max_depth", whole(minimum=1), _default(Tenant, "queue_max_depth")),
    ),
    key=lambda values: values["slug"],
    children=(Child("rate_limits", RATE_LIMIT), Child("budget", BUDGET, single=True)),
    retire="deactivate",
)


def _slug_or_none(value: Any) -> str | None:
    return None if value is None else name(value)


def _channel_problems(values: Mapping[str, Any]) -> list[str]:
    """The rules the console and the API check a channel by (notifications.services)."""
    secret = values["secret"]
    problems = alert_channel_problems(
        kind=values["kind"],
        emails=values["emails"],
        url=values["url"],
        events=values["events"],
        tenant_id=None if values["tenant"] is None else 0,  # only whether it has one matters
        has_secret=bool(secret),
    )
    if secret and len(secret) < SECRET_MIN_LENGTH:
        problems["secret"] = f"A signing secret has at least {SECRET_MIN_LENGTH} characters."
    return [f"{field_name}: {message}" for field_name, message in problems.items()]


ALERT_CHANNEL = Shape(
    "alert channel",
    (
        Field("name", name),
        Field("tenant", _slug_or_none, _none),
        Field("kind", choice(AlertChannel.Kind.values)),
        Field("emails", names(ordered=False), list),
        Field("url", text, lambda: ""),
        Field("secret", text, lambda: "", secret=True),
        Field("events", names(choices=AlertEvent.values, ordered=False)),
        Field("active", flag, _default(AlertChannel, "active")),
    ),
    key=lambda values: values["name"],
    retire="deactivate",
    repeats=True,  # names need not be unique: the second "ops" is "ops #2", in the order they were made
    check=_channel_problems,
)

# In the order they are written and applied: providers before the models they serve, models before tenants,
# tenants before the alert channels that name them.
SECTIONS: dict[str, Shape] = {
    "providers": PROVIDER,
    "model_list_sources": SOURCE,
    "models": MODEL,
    "tenants": TENANT,
    "alert_channels": ALERT_CHANNEL,
}


# --- reading a file ---------------------------------------------------------------------------------------------


def parse_document(raw: Mapping[str, Any]) -> Document:
    """The document a file's YAML holds, every value checked and defaulted; ConfigInvalid names each problem."""
    problems: list[str] = []
    for unknown in sorted(set(raw) - {"version", *SECTIONS}, key=str):
        problems.append(f"{unknown}: not a section; the sections are {', '.join(SECTIONS)}")
    if raw.get("version", VERSION) != VERSION:
        problems.append(f"version: this Portico reads version {VERSION} files")
    sections: dict[str, list[Entry] | None] = {}
    for section, shape in SECTIONS.items():
        if section not in raw:
            sections[section] = None
        elif not isinstance(raw[section], list):
            problems.append(f"{section}: expected a list ([] for none), got {kind_of(raw[section])}")
        else:
            sections[section] = _parse_list(raw[section], shape, section, problems)
    if problems:
        raise ConfigInvalid(problems)
    return Document(sections)


def _parse_list(items: list[Any], shape: Shape, path: str, problems: list[str]) -> list[Entry]:
    entries = [
        entry for index, item in enumerate(items) if (entry := _parse(item, shape, f"{path}[{index}]", problems))
    ]
    return number_repeats(entries, shape, problems)


def number_repeats(entries: list[Entry], shape: Shape, problems: list[str] | None = None) -> list[Entry]:
    """Entries of a shape that `repeats` keyed `key`, `key #2`, ... in their order; a repeated key of any other
    shape is a problem. The database's rows are keyed the same way, so the n-th of a kind meets the n-th."""
    first: dict[str, str] = {}
    for entry in entries:
        if entry.key not in first:
            first[entry.key] = entry.path
            continue
        if not shape.repeats:
            if problems is not None:
                problems.append(f"{entry.path}: a second {shape.label} {entry.key!r} (the first is {first[entry.key]})")
            continue
        base, number = entry.key, 2
        while f"{base} #{number}" in first:
            number += 1
        entry.key = f"{base} #{number}"
        first[entry.key] = entry.path
    return entries


def _parse(item: Any, shape: Shape, path: str, problems: list[str]) -> Entry | None:
    if not isinstance(item, dict):
        problems.append(f"{path}: expected a {shape.label} (a mapping), got {kind_of(item)}")
        return None
    known = {f.name for f in shape.fields} | {child.name for child in shape.children}
    for unknown in sorted(set(item) - known, key=str):
        problems.append(f"{path}.{unknown}: not a field of a {shape.label}")
    values: dict[str, Any] = {}
    for spec in shape.fields:
        if spec.name not in item and spec.default is None:
            problems.append(f"{path}.{spec.name}: required")
            continue
        try:
            values[spec.name] = spec.parse(item[spec.name]) if spec.name in item else _call(spec.default)
        except Problem as exc:
            problems.append(f"{path}.{spec.name}: {exc}")
    children = {
        child.name: _parse_child(item.get(child.name), child, f"{path}.{child.name}", problems)
        for child in shape.children
    }
    if len(values) < len(shape.fields):
        return None
    if shape.check is not None:
        problems.extend(f"{path}.{problem}" for problem in shape.check(values))
    return Entry(path, shape.key(values), values, children)


def _parse_child(value: Any, child: Child, path: str, problems: list[str]) -> list[Entry]:
    if value is None:
        return []
    if child.single:
        entry = _parse(value, child.shape, path, problems)
        return [entry] if entry else []
    if not isinstance(value, list):
        problems.append(f"{path}: expected a list, got {kind_of(value)}")
        return []
    return _parse_list(value, child.shape, path, problems)


def _call(default: Callable[[], Any] | None) -> Any:
    assert default is not None  # a field without a default was reported as required
    return default()


def reference_problems(document: Document, *, providers: set[str], models: set[str]) -> list[str]:
    """What the document names that exists neither in it nor (`providers`, `models`) in the database."""
    providers = providers | {entry.key for entry in document.entries("providers")}
    models = models | {entry.key for entry in document.entries("models")}
    problems: list[str] = []
    for model in document.entries("models"):
        for deployment in model.children["deployments"]:
            if deployment.values["provider"] not in providers:
                problems.append(f'{deployment.path}.provider: unknown provider "{deployment.values["provider"]}"')
        for index, fallback in enumerate(model.values["fallbacks"]):
            if fallback == model.key:
                problems.append(f"{model.path}.fallbacks[{index}]: a model cannot be its own fallback")
            elif fallback not in models:
                problems.append(f'{model.path}.fallbacks[{index}]: unknown model "{fallback}"')
    for tenant in document.entries("tenants"):
        for public_id in tenant.values["allowed_models"] or ():
            if public_id not in models:
                problems.append(f'{tenant.path}.allowed_models: unknown model "{public_id}"')
        for limit in tenant.children["rate_limits"]:
            if limit.values["model"] and limit.values["model"] not in models:
                problems.append(f'{limit.path}.model: unknown model "{limit.values["model"]}"')
    return problems


# --- writing a file ---------------------------------------------------------------------------------------------


SecretWriter = Callable[[str, Entry, Field], Any]


def document_raw(document: Document, secret: SecretWriter) -> dict[str, Any]:
    """The document as YAML-ready data; `secret(section, entry, field)` writes each secret field."""
    raw: dict[str, Any] = {"version": VERSION}
    for section, shape in SECTIONS.items():
        entries = document.sections.get(section)
        if entries is not None:
            raw[section] = [_entry_raw(entry, shape, partial(secret, section)) for entry in entries]
    return raw


def _entry_raw(entry: Entry, shape: Shape, secret: Callable[[Entry, Field], Any]) -> dict[str, Any]:
    raw = {
        spec.name: secret(entry, spec) if spec.secret else _escaped(spec.dump(entry.values[spec.name]))
        for spec in shape.fields
    }
    for child in shape.children:
        rows = [_entry_raw(row, child.shape, secret) for row in entry.children.get(child.name, [])]
        raw[child.name] = (rows[0] if rows else None) if child.single else rows
    return raw


def _escaped(value: Any) -> Any:
    """A value with every text in it written as it is: no `${` in it reads as a reference."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    return value
