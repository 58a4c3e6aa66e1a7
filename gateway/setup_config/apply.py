"""Making the database match a setup file, in one transaction, through the services the management API uses.

    read the file -> resolve ${ENV_VAR} -> check every value -> check what it names -> plan -> announce -> write

Nothing is kept unless every step passes: a problem anywhere (an unset
variable, a bad value, a model neither the file nor the database has, a row a
service refuses) rolls the whole file back. A dry run writes too, then rolls
back, so it finds what only the services can find.

Providers and sources are written first, then models in two passes (every
model, then fallbacks, which may name a model the same file adds), then tenants.
Rows the file leaves out are retired only with `prune` (diff.py says how); the
providers and models a model-list source manages are its own, never the file's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from billing.models import DeploymentPrice, Price
from billing.prices import deployment_price_withdraw, price_withdraw
from billing.services import (
    budget_delete,
    budget_set,
    deployment_price_add,
    price_add,
    rate_limit_delete,
    rate_limit_set,
)
from gateway.setup_config.diff import ItemPlan, plan
from gateway.setup_config.export import alert_channels, deployment_entries, read_setup
from gateway.setup_config.files import load, resolve_references
from gateway.setup_config.schema import (
    ConfigInvalid,
    Document,
    Entry,
    parse_document,
    reference_problems,
)
from gateway.setup_config.values import instant_text
from notifications.models import AlertChannel
from notifications.services import alert_channel_save
from providers.facade import CAPABILITIES
from providers.model_lists.services import SETTINGS_SOURCE, model_list_source_create, model_list_source_update
from providers.models import ModelListProvider, ModelListSource, ModelRoute, Provider, PublicModel
from providers.services import (
    MODEL_TIMEOUTS,
    PROVIDER_TIMEOUTS,
    model_route_check,
    provider_check,
    provider_create,
    provider_update,
    public_model_check,
    public_model_create,
    public_model_set_deployments,
    public_model_update,
)
from tenants.models import Tenant
from tenants.tenant_services import tenant_add, tenant_deactivate, tenant_update


def read_file(text: str, environ: Mapping[str, str] | None = None) -> Document:
    """The document a file holds, references resolved; ConfigInvalid (or files.FileUnreadable) says what is wrong."""
    raw, problems = resolve_references(load(text), environ)
    if problems:
        raise ConfigInvalid(problems)
    return parse_document(raw)


def apply_document(
    desired: Document,
    *,
    prune: bool = False,
    dry_run: bool = False,
    announce: Callable[[list[ItemPlan]], None] | None = None,
) -> list[ItemPlan]:
    """Make the database match `desired`; `announce` hears the plan before anything is written."""
    with transaction.atomic():
        _check(desired)
        now = timezone.now()
        items = plan(read_setup(), desired, prune=prune, now=now)
        if announce is not None:
            announce(items)
        _write(items, prune=prune, now=now)
        if dry_run:
            transaction.set_rollback(True)
    return items


def _check(desired: Document) -> None:
    problems = reference_problems(
        desired,
        providers=set(Provider.objects.values_list("name", flat=True)),
        models=set(PublicModel.objects.values_list("public_id", flat=True)),
    )
    made_by = dict(ModelListProvider.objects.values_list("provider__name", "source__name"))
    for entry in desired.entries("providers"):
        if entry.key in made_by:
            problems.append(f'{entry.path}.name: "{entry.key}" is made by the model-list source "{made_by[entry.key]}"')
    listed = dict(
        PublicModel.objects.filter(list_entry__isnull=False).values_list("public_id", "list_entry__source__name")
    )
    for entry in desired.entries("models"):
        if entry.key in listed:
            problems.append(
                f'{entry.path}.public_id: "{entry.key}" is managed by the model-list source "{listed[entry.key]}"'
            )
    tenants = set(Tenant.objects.values_list("slug", flat=True)) | {entry.key for entry in desired.entries("tenants")}
    for entry in desired.entries("alert_channels"):
        slug = entry.values["tenant"]
        if slug is not None and slug not in tenants:
            problems.append(f'{entry.path}.tenant: unknown tenant "{slug}"')
    for entry in desired.entries("model_list_sources"):
        if entry.key == SETTINGS_SOURCE:
            problems.append(f'{entry.path}.name: "{SETTINGS_SOURCE}" is the source PORTICO_MODEL_LIST_URL configures')
    if problems:
        raise ConfigInvalid(problems)


def _write(items: list[ItemPlan], *, prune: bool, now: datetime) -> None:
    _each(items, "providers", _provider, retire=_retire_provider)
    _each(items, "model_list_sources", _source, retire=_retire_source)
    _each(items, "models", lambda item: _model(item, prune=prune, now=now), retire=_retire_model)
    _each(items, "models", _fallbacks)
    _each(items, "tenants", lambda item: _tenant(item, prune=prune), retire=_retire_tenant)
    _each(items, "alert_channels", _alert_channel, retire=_retire_alert_channel)


def _each(
    items: list[ItemPlan],
    section: str,
    write: Callable[[ItemPlan], None],
    *,
    retire: Callable[[str], None] | None = None,
) -> None:
    for item in items:
        if item.section != section:
            continue
        if item.action in ("create", "change"):
            with _at(_desired(item).path):
                write(item)
        elif item.action == "retire" and retire is not None:
            with _at(section):
                retire(item.key)


@contextmanager
def _at(path: str) -> Iterator[None]:
    """A service's refusal, said at the entry's place in the file."""
    try:
        yield
    except DjangoValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise ConfigInvalid([f"{path}: {message}" for message in exc.messages]) from None
        raise ConfigInvalid(
            [
                f"{path}{'' if name == '__all__' else '.' + _field_name(name)}: {message}"
                for name, messages in exc.message_dict.items()
                for message in messages
            ]
        ) from None


def _field_name(name: str) -> str:
    return "capabilities" if name.startswith("supports_") else name


def _desired(item: ItemPlan) -> Entry:
    assert item.desired is not None  # created and changed entries are the file's
    return item.desired


def _changed(item: ItemPlan) -> set[str]:
    return {change.name for change in item.changes}


# --- providers and sources --------------------------------------------------------------------------------------


def _provider(item: ItemPlan) -> None:
    values = dict(_desired(item).values)
    name, credential, headers = values.pop("name"), values.pop("credential"), values.pop("extra_headers")
    # The rules the console and the management API apply (an entry describes the whole provider).
    provider_check(
        kind=values.get("kind"),
        base_url=values.get("base_url"),
        extra_headers=headers,
        timeouts={field: values.get(field) for field in PROVIDER_TIMEOUTS},
    )
    if item.action == "create":
        provider_create(name=name, credential=credential, extra_headers=headers, **values)
        return
    provider_update(
        provider=Provider.objects.get(name=name),
        fields=values,
        credential=credential if "credential" in _changed(item) else None,
        extra_headers=headers if "extra_headers" in _changed(item) else None,
    )


def _source(item: ItemPlan) -> None:
    values = dict(_desired(item).values)
    name, credential = values.pop("name"), values.pop("credential")
    if item.action == "create":
        model_list_source_create(name=name, credential=credential, **values)
        return
    model_list_source_update(
        source=ModelListSource.objects.get(name=name),
        fields=values,
        credential=credential if "credential" in _changed(item) else None,
    )


# --- models, deployments and prices -----------------------------------------------------------------------------


def _model_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    fields = {name: value for name, value in values.items() if name not in ("public_id", "capabilities", "fallbacks")}
    fields.update({f"supports_{name}": name in values["capabilities"] for name in CAPABILITIES})
    return fields


def _model(item: ItemPlan, *, prune: bool, now: datetime) -> None:
    entry = _desired(item)
    public_model_check(timeouts={field: entry.values.get(field) for field in MODEL_TIMEOUTS})
    if item.action == "create":
        model = public_model_create(public_id=entry.key, **_model_fields(entry.values))
    else:
        model = PublicModel.objects.get(public_id=entry.key)
        public_model_update(model=model, fields=_model_fields(entry.values))
    _deployments(model, entry.children["deployments"], prune=prune, now=now)
    _history(
        model.prices.all(),
        entry.children["prices"],
        add=lambda values: price_add(model=model, **values),
        withdraw=lambda row: price_withdraw(price=row, now=now),
        prune=prune,
        now=now,
    )


def _fallbacks(item: ItemPlan) -> None:
    entry = _desired(item)
    model = PublicModel.objects.get(public_id=entry.key)
    if model.fallbacks != entry.values["fallbacks"]:
        public_model_update(model=model, fields={"fallbacks": entry.values["fallbacks"]})


def _deployments(model: PublicModel, wanted: list[Entry], *, prune: bool, now: datetime) -> None:
    """The model's whole set of deployments, as public_model_set_deployments takes it: those the file gives
    (matched to the stored ones by key, so they keep their ids, breakers and history), then those it leaves out,
    kept as they are or, with `prune`, deactivated."""
    stored = {entry.key: route for entry, route in deployment_entries(model)}
    given: list[dict[str, Any]] = []
    for entry in wanted:
        with _at(entry.path):
            model_route_check(priority=entry.values.get("priority"))
        fields = {**entry.values, "provider": Provider.objects.get(name=entry.values["provider"])}
        route = stored.pop(entry.key, None)
        given.append({**fields, "id": route.pk} if route is not None else fields)
    given += [{"id": route.pk, **({"active": False} if prune else {})} for route in stored.values()]
    routes = public_model_set_deployments(model=model, deployments=given)
    for entry, route in zip(wanted, routes, strict=False):
        _history(
            route.costs.all(),
            entry.children["costs"],
            add=partial(_add_cost, route),
            withdraw=lambda row: deployment_price_withdraw(cost=row, now=now),
            prune=prune,
            now=now,
        )


def _add_cost(route: ModelRoute, values: dict[str, Any]) -> object:
    return deployment_price_add(deployment=route, **values)


def _history(
    rows: Iterable[Price | DeploymentPrice],
    wanted: list[Entry],
    *,
    add: Callable[[dict[str, Any]], object],
    withdraw: Callable[[Any], None],
    prune: bool,
    now: datetime,
) -> None:
    """Add the prices the file has and the database lacks; one that has not started and differs is withdrawn and
    added again (the plan refused a change to one in effect). With `prune`, scheduled ones the file lacks go."""
    stored = {instant_text(row.effective_from): row for row in rows}
    for entry in wanted:
        row = stored.pop(entry.key, None)
        if row is not None and all(getattr(row, name) == value for name, value in entry.values.items()):
            continue
        if row is not None:
            withdraw(row)
        add(dict(entry.values))
    for row in stored.values():
        if prune and row.effective_from > now:
            withdraw(row)


# --- tenants ----------------------------------------------------------------------------------------------------


def _tenant(item: ItemPlan, *, prune: bool) -> None:
    entry = _desired(item)
    fields = dict(entry.values)
    slug, allowed = fields.pop("slug"), fields["allowed_models"]
    fields["allowed_models"] = None if allowed is None else list(PublicModel.objects.filter(public_id__in=allowed))
    if item.action == "create":
        tenant = tenant_add(name=fields.pop("name"), slug=slug, fields=fields)
    else:
        tenant = tenant_update(tenant=Tenant.objects.get(slug=slug), fields=fields)
    limits = {row.model: row for row in tenant.rate_limits.all()}
    for limit in entry.children["rate_limits"]:
        row = limits.pop(limit.values["model"], None)
        if row is None or any(getattr(row, name) != value for name, value in limit.values.items()):
            rate_limit_set(tenant=tenant, **limit.values)
    for row in limits.values() if prune else ():
        rate_limit_delete(rate_limit=row)
    budget = tenant.budgets.first()
    wanted = entry.children["budget"][0].values if entry.children["budget"] else None
    if wanted is not None and (budget is None or any(getattr(budget, k) != v for k, v in wanted.items())):
        budget_set(tenant=tenant, **wanted)
    elif wanted is None and budget is not None and prune:
        budget_delete(budget=budget)


# --- retiring what the file leaves out (with --prune) -----------------------------------------------------------


def _retire_provider(name: str) -> None:
    provider_update(provider=Provider.objects.get(name=name), fields={"active": False})


def _retire_source(name: str) -> None:
    model_list_source_update(source=ModelListSource.objects.get(name=name), fields={"enabled": False})


def _retire_model(public_id: str) -> None:
    public_model_update(model=PublicModel.objects.get(public_id=public_id), fields={"active": False})


def _retire_tenant(slug: str) -> None:
    tenant_deactivate(tenant=Tenant.objects.get(slug=slug))


def _retire_alert_channel(key: str) -> None:
    channel = _stored_channel(key)
    channel.active = False
    alert_channel_save(channel=channel)


# --- alert channels ---------------------------------------------------------------------------------------------


def _stored_channel(key: str) -> AlertChannel:
    """The channel a key names: "ops" the oldest named ops, "ops #2" the next (as export numbers them)."""
    name, _sep, number = key.rpartition(" #") if " #" in key else (key, "", "1")
    return list(alert_channels().filter(name=name))[int(number) - 1]


def _alert_channel(item: ItemPlan) -> None:
    entry = _desired(item)
    values = dict(entry.values)
    slug, secret = values.pop("tenant"), values.pop("secret")
    if item.action == "create":
        tenant = Tenant.objects.get(slug=slug) if slug is not None else None
        alert_channel_save(channel=AlertChannel(tenant=tenant, **values), secret=secret)
        return
    if "tenant" in _changed(item):
        # As in the console and the API: another tenant's alerts are another channel.
        raise ConfigInvalid([f"{entry.path}.tenant: a channel's tenant is fixed once it is made; add another channel"])
    channel = _stored_channel(item.key)
    for field_name, value in values.items():
        setattr(channel, field_name, value)
    alert_channel_save(channel=channel, secret=secret if "secret" in _changed(item) else "")
