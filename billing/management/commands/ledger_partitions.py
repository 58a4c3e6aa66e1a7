"""The usage ledger's monthly partitions, for operators: `portico ledger-partitions show|ensure|prune`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from billing.partitions import (
    Pruned,
    is_partitioned,
    ledger_partitions,
    ledger_partitions_ensure,
    ledger_partitions_prune,
)


class Command(BaseCommand):
    help = "Show the usage ledger's monthly partitions (PostgreSQL), make those ahead, or prune old ones."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("show", help="List the partitions and their rows (estimated; exact for the default one).")
        ensure = actions.add_parser("ensure", help="Make this month's partition and those of the months ahead.")
        ensure.add_argument("--ahead", type=int, default=settings.PORTICO_LEDGER_PARTITIONS_AHEAD, help="Months.")
        prune = actions.add_parser("prune", help="Archive (if a directory is set) and drop months past retention.")
        prune.add_argument(
            "--keep-months",
            type=int,
            default=settings.PORTICO_LEDGER_RETENTION_MONTHS,
            help="Months kept before this one; 0 keeps everything (PORTICO_LEDGER_RETENTION_MONTHS).",
        )
        prune.add_argument(
            "--archive-dir",
            default=settings.PORTICO_LEDGER_ARCHIVE_DIR,
            help="Write each dropped month there as gzip CSV first (PORTICO_LEDGER_ARCHIVE_DIR).",
        )
        prune.add_argument("--dry-run", action="store_true", help="Say what would be dropped; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not is_partitioned():
            self.stdout.write("The usage ledger is not partitioned: partitions are made on PostgreSQL only.")
            return
        try:
            getattr(self, f"_{options['action']}")(options)
        except DatabaseError as exc:
            raise CommandError(f"The database refused: {exc}") from exc

    def _show(self, options: dict[str, Any]) -> None:
        for partition in ledger_partitions():
            month = f"{partition.month:%Y-%m}" if partition.month else "default"
            rows = "?" if partition.rows < 0 else str(partition.rows)
            self.stdout.write(f"{month:8}  {partition.name:40}  {rows:>12} rows")

    def _ensure(self, options: dict[str, Any]) -> None:
        if options["ahead"] < 0:
            raise CommandError("--ahead must be 0 or more.")
        made = ledger_partitions_ensure(ahead=options["ahead"])
        self.stdout.write(f"Made: {', '.join(made)}." if made else "Every partition was there already.")

    def _prune(self, options: dict[str, Any]) -> None:
        if options["keep_months"] <= 0:
            self.stdout.write("Retention is 0 months: every partition is kept.")
            return
        archive_dir = Path(options["archive_dir"]) if options["archive_dir"] else None
        pruned = ledger_partitions_prune(
            keep_months=options["keep_months"], archive_dir=archive_dir, dry_run=options["dry_run"]
        )
        verb = "Would drop" if options["dry_run"] else "Dropped"
        if not pruned:
            self.stdout.write("Nothing is older than the months kept.")
        for item in pruned:
            self.stdout.write(f"{verb} {_described(item, dry_run=options['dry_run'])}")


def _described(item: Pruned, *, dry_run: bool) -> str:
    what = f"{item.name} ({item.month:%Y-%m})" if item.month else f"the rows of {item.name} older than the months kept"
    if item.archive is None:
        return what
    return f"{what}, {'to be archived' if dry_run else 'archived'} to {item.archive}"
