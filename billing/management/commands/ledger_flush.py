"""Insert every spooled ledger line now: for operators draining a host, and after an outage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from billing.ledger import drain


class Command(BaseCommand):
    help = "Insert the usage rows waiting in the ledger spool directory (PORTICO_LEDGER_DIR) into the database."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dir", default=settings.PORTICO_LEDGER_DIR, help="The spool directory to drain.")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["dir"])
        try:
            rows = drain(directory)
        except DatabaseError as exc:
            raise CommandError(f"The database refused the rows; they stay spooled in {directory}: {exc}") from exc
        self.stdout.write(f"{rows} ledger row(s) inserted from {directory}.")
