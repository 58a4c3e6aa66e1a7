"""`portico createapitoken <username>`: a token for the management API (/api/).

The token goes to stdout alone, so `TOKEN=$(portico createapitoken alice)`
captures it; the note about it goes to stderr. It is shown this once: Portico
keeps only its prefix and a keyed hash. A user has one token; `--rotate`
replaces it.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tenants.models import ManagementToken, TenantRole
from tenants.services import management_token_create


class Command(BaseCommand):
    help = "Create a management API token for a user and print it. It is shown this once and cannot be shown again."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="Replace the user's token; the old one stops working."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get_by_natural_key(options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"No user {options['username']!r}. Add one with `portico createsuperuser`.") from None
        existing = ManagementToken.objects.filter(user=user).first()
        if existing is not None and not options["rotate"]:
            raise CommandError(
                f"{user.get_username()} already has a token ({existing.prefix}…), which cannot be shown again. "
                "Use --rotate to replace it."
            )
        token, plaintext = management_token_create(user=user, replace=options["rotate"])
        self.stdout.write(plaintext)
        note = f"{'Replaced the' if existing else 'Created a'} token for {user.get_username()}; it is not shown again."
        note += " Send it as 'Authorization: Token <token>'."
        if not user.is_active:
            note += " The user is inactive, so the token is refused."
        elif not user.is_staff and not user.tenant_memberships.filter(role=TenantRole.ADMIN).exists():
            note += " The user is neither staff nor a tenant admin, so the API refuses it (403)."
        self.stderr.write(note, style_func=self.style.WARNING)
