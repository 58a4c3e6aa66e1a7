"""`portico createkey`: issue an API key from the command line.

The key goes to stdout alone, so `KEY=$(portico createkey ...)` captures it;
the note about it goes to stderr.
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from providers.models import PublicModel
from tenants.models import Tenant
from tenants.services import api_key_create, tenant_models_outside


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it. It is shown this once and cannot be shown again."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--name", required=True, help="What the key is for, e.g. 'laptop'.")
        parser.add_argument("--expires-in-days", type=int, metavar="N", help="Make the key expire after N days.")
        parser.add_argument(
            "--models", default="", metavar="ID,ID", help="Comma-separated model ids the key may call (default: all)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = _tenant(options["tenant"])
        models = _models(tenant, options["models"])
        expires_at = _expiry(options["expires_in_days"])
        api_key, plaintext = api_key_create(
            tenant=tenant, name=options["name"], expires_at=expires_at, allowed_model_ids=[m.pk for m in models]
        )
        self.stdout.write(plaintext)
        note = f"Created key {api_key.prefix}… for tenant {tenant.slug}. Copy it now: it will not be shown again."
        if not tenant.active:
            note += " The tenant is inactive, so the key will be refused until it is activated."
        self.stderr.write(note, style_func=self.style.WARNING)


def _tenant(slug: str) -> Tenant:
    try:
        return Tenant.objects.get(slug=slug)
    except DatabaseError as exc:
        # Most often a database that was never migrated; a traceback would hide that.
        raise CommandError(f"Cannot read tenants ({exc}). Is the database set up? Run `portico migrate`.") from None
    except Tenant.DoesNotExist:
        known = ", ".join(Tenant.objects.values_list("slug", flat=True)[:20]) or "none yet"
        raise CommandError(f"No tenant with slug {slug!r}. Known tenants: {known}.") from None


def _models(tenant: Tenant, models: str) -> list[PublicModel]:
    wanted = [item.strip() for item in models.split(",") if item.strip()]
    found = list(PublicModel.objects.filter(public_id__in=wanted))
    unknown = sorted(set(wanted) - {model.public_id for model in found})
    if unknown:
        raise CommandError(f"Unknown model id(s): {', '.join(unknown)}. See them with GET /v1/models or the admin.")
    outside = tenant_models_outside(tenant=tenant, public_ids=wanted)
    if outside:
        raise CommandError(f"Tenant {tenant.slug} may not use: {', '.join(outside)}.")
    return found


def _expiry(days: int | None) -> datetime | None:
    if days is None:
        return None
    if days < 1:
        raise CommandError("--expires-in-days must be at least 1.")
    return timezone.now() + timedelta(days=days)
