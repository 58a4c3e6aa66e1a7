"""`portico createtenant`: a tenant with its models, limits, budget and first key, in one step.

    portico createtenant --name "Acme Corp" --models gpt-4o,gpt-4o-mini --rpm 600 --budget 100 --with-key ci

Everything is created in one transaction, or nothing is. With `--with-key`,
the key goes to stdout alone, so `KEY=$(portico createtenant ... --with-key ci)`
captures it, and the note about the tenant goes to stderr; `--json` prints one
JSON object instead (the key in it, shown this once). The command lives in the
gateway, above tenants and billing, because a tenant's limits and budget are
billing's.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, ArgumentTypeError
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction
from django.utils.text import slugify

from billing.models import Budget
from billing.services import budget_set, rate_limit_set
from providers.models import PublicModel
from tenants.models import Tenant
from tenants.services import api_key_create
from tenants.tenant_services import tenant_add

# What Budget.amount holds: 14 digits, 4 of them after the point.
_BUDGET_CEILING = Decimal(10) ** 10


class Command(BaseCommand):
    help = "Create a tenant, optionally with a model list, rate limits, a budget and a first API key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="The tenant's name, e.g. 'Acme Corp'.")
        parser.add_argument("--slug", help="Its unique short name (default: the name, slugified).")
        parser.add_argument(
            "--models", default="", metavar="ID,ID", help="Public model ids it may call (default: all)."
        )
        parser.add_argument("--rpm", type=_count, metavar="N", help="Requests per minute, over all its keys.")
        parser.add_argument("--tpm", type=_count, metavar="N", help="Tokens per minute, over all its keys.")
        parser.add_argument("--budget", type=_amount, metavar="USD", help="Spending limit in USD per period.")
        parser.add_argument(
            "--period", choices=Budget.Period.values, help="The budget's period (default: monthly); needs --budget."
        )
        parser.add_argument("--with-key", metavar="NAME", help="Also create an API key of this name and print it.")
        parser.add_argument("--json", action="store_true", help="Print what was created as one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["period"] and options["budget"] is None:
            raise CommandError("--period needs --budget.")
        slug = options["slug"] or slugify(options["name"])
        if not slug:
            raise CommandError(f"Cannot make a slug of the name {options['name']!r}: give one with --slug.")
        try:
            created = _create(options, slug)
        except DatabaseError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"Cannot create the tenant ({first_line}). Is the database set up?") from None
        if options["json"]:
            self.stdout.write(json.dumps(created, indent=2))
        elif created["key"]:
            self.stdout.write(created["key"]["key"])
            self.stderr.write(_note(created), style_func=self.style.WARNING)
        else:
            self.stdout.write(_note(created))


@transaction.atomic
def _create(options: dict[str, Any], slug: str) -> dict[str, Any]:
    existing = Tenant.objects.filter(slug=slug).first()
    if existing is not None:
        raise CommandError(f"The slug {slug!r} is taken (by {existing.name!r}): choose another with --slug.")
    models = _models(options["models"])
    try:
        tenant = tenant_add(name=options["name"], slug=slug, fields={"allowed_models": models})
    except ValidationError as exc:
        raise CommandError("; ".join(f"--{name}: {' '.join(m)}" for name, m in exc.message_dict.items())) from None
    limits = {"requests_per_minute": options["rpm"], "tokens_per_minute": options["tpm"]}
    if any(value is not None for value in limits.values()):
        rate_limit_set(tenant=tenant, **limits)
    budget = None
    if options["budget"] is not None:
        period = options["period"] or Budget.Period.MONTHLY
        budget = budget_set(tenant=tenant, amount=options["budget"], period=period)
    key = None
    if options["with_key"]:
        api_key, plaintext = api_key_create(tenant=tenant, name=options["with_key"])
        key = {"id": api_key.pk, "name": api_key.name, "prefix": api_key.prefix, "key": plaintext}
    return {
        "id": tenant.pk,
        "name": tenant.name,
        "slug": tenant.slug,
        "allowed_models": None if models is None else [model.public_id for model in models],
        "rate_limit": limits if any(value is not None for value in limits.values()) else None,
        "budget": None if budget is None else {"amount": str(budget.amount), "period": budget.period},
        "key": key,
    }


def _models(listed: str) -> list[PublicModel] | None:
    wanted = list(dict.fromkeys(item.strip() for item in listed.split(",") if item.strip()))
    if not wanted:
        return None
    found = {model.public_id: model for model in PublicModel.objects.filter(public_id__in=wanted)}
    unknown = [public_id for public_id in wanted if public_id not in found]
    if unknown:
        known = ", ".join(PublicModel.objects.order_by("public_id").values_list("public_id", flat=True)[:20])
        raise CommandError(f"Unknown model id(s): {', '.join(unknown)}. Known models: {known or 'none yet'}.")
    return [found[public_id] for public_id in wanted]


def _note(created: dict[str, Any]) -> str:
    models = created["allowed_models"]
    parts = [f"Created tenant {created['slug']} ({created['name']}), "]
    parts.append("every model" if models is None else f"models: {', '.join(models) or 'none'}")
    limit = created["rate_limit"]
    if limit:
        said = [f"{limit['requests_per_minute']} requests" if limit["requests_per_minute"] is not None else ""]
        said.append(f"{limit['tokens_per_minute']} tokens" if limit["tokens_per_minute"] is not None else "")
        parts.append(f"; {' and '.join(part for part in said if part)} a minute")
    if created["budget"]:
        parts.append(f"; a budget of {created['budget']['amount']} USD ({created['budget']['period']})")
    if created["key"]:
        parts.append(f". Key {created['key']['prefix']}… is on stdout: copy it now, it will not be shown again")
    return "".join(parts) + "."


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= number <= 2_147_483_647:
        raise ArgumentTypeError("must be between 1 and 2147483647")
    return number


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ArgumentTypeError(f"{value!r} is not an amount") from None
    if not amount.is_finite() or not 0 <= amount < _BUDGET_CEILING:
        raise ArgumentTypeError(f"must be at least 0 and less than {_BUDGET_CEILING}")
    if amount != amount.quantize(Decimal("0.0001")):
        raise ArgumentTypeError("at most 4 decimal places")
    return amount
