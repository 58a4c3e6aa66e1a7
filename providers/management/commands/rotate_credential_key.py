"""`portico rotate-credential-key`: re-encrypt every stored secret with the first PORTICO_CREDENTIAL_KEY.

Run it after putting the new key in front of the old ones and reloading every
process (docs/credential-key-rotation.md). It changes one row per transaction and
servers decrypt with every configured key meanwhile, so nothing stops. It prints
its progress and how many rows it re-encrypted; a second run finds none. It exits
1 if some secret opens with no configured key: the old key must then stay.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from providers.credentials import RotationProgress, credential_keys, credentials_rotate


class Command(BaseCommand):
    help = "Re-encrypt provider credentials, model-list credentials and alert secrets with the first credential key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=100, metavar="N", help="Rows read at a time (default: 100)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        count = len(credential_keys())
        self.stdout.write(f"{count} credential key(s) configured; encrypting with the first.")
        try:
            done = credentials_rotate(batch_size=options["batch_size"], on_batch=self._progress)
        except DatabaseError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"Cannot use the database ({first_line}). Is it set up?") from None
        rotated = sum(progress.rotated for progress in done)
        unreadable = sum(progress.unreadable for progress in done)
        self.stdout.write(f"Rotated {rotated} row(s); {sum(progress.checked for progress in done)} checked.")
        if unreadable:
            raise CommandError(
                f"{unreadable} row(s) hold a secret that no configured key decrypts; they were left as they are. "
                "Keep the old key(s) until those secrets are entered again."
            )
        if count > 1:
            self.stdout.write("Every secret is now under the first key: the others can be removed.")

    def _progress(self, progress: RotationProgress) -> None:
        self.stdout.write(f"  {progress.label}: {progress.checked} checked, {progress.rotated} rotated")
