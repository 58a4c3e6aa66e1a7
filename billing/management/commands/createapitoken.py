"""`portico createapitoken <username>`: a token for the management API (/api/).

The token goes to stdout alone, so `TOKEN=$(portico createapitoken alice)`
captures it; the note about it goes to stderr. A user has one token: asking
again prints the same one, `--rotate` replaces it.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print a management API token for a user, creating it if needed."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="Replace the user's token; the old one stops working."
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get_by_natural_key(options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"No user {options['username']!r}. Add one with `portico createsuperuser`.") from None
        if options["rotate"]:
            Token.objects.filter(user=user).delete()
        token, created = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
        note = f"{'Created' if created else 'Existing'} token for {user.get_username()}."
        note += " Send it as 'Authorization: Token <token>'."
        if not user.is_active:
            note += " The user is inactive, so the token is refused."
        elif not user.is_staff and not user.administered_tenants.exists():
            note += " The user is neither staff nor a tenant admin, so the API refuses it (403)."
        self.stderr.write(note, style_func=self.style.WARNING)
