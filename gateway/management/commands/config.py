"""`portico config export [-o FILE]` and `portico config apply FILE [--dry-run] [--prune]`: the setup as code.

`export` writes the whole setup as YAML, secrets as `${ENV_VAR}` references.
`apply` prints what the file changes, then makes the database match it in one
transaction (docs/setup-as-code.md). Any problem exits non-zero with nothing
applied; each names its place in the file.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from gateway.setup_config.apply import apply_document, read_file
from gateway.setup_config.diff import ItemPlan, has_changes, render
from gateway.setup_config.export import export_text
from gateway.setup_config.files import FileUnreadable
from gateway.setup_config.schema import ConfigInvalid


class Command(BaseCommand):
    help = "Write Portico's setup as a YAML file (export), or make the database match one (apply)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{export,apply}")
        export = actions.add_parser("export", help="write the whole setup as YAML, secrets as ${ENV_VAR} references")
        export.add_argument("-o", "--output", metavar="FILE", help="write to FILE rather than to stdout")
        apply = actions.add_parser("apply", help="make the database match a setup file, in one transaction")
        apply.add_argument("file", metavar="FILE", help="the setup file; - reads it from stdin")
        apply.add_argument("--dry-run", action="store_true", help="print what would change and change nothing")
        apply.add_argument(
            "--prune",
            action="store_true",
            help="retire what the file leaves out: deactivate providers, models, deployments and tenants, disable "
            "sources, delete rate limits, budgets and prices not yet in effect",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "export":
                self._export(options["output"])
            else:
                self._apply(options["file"], dry_run=options["dry_run"], prune=options["prune"])
        except DatabaseError as exc:
            # Most often a database that was never migrated; a traceback would hide that.
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(
                f"Cannot use the database ({first_line}). Is it set up? Run `portico migrate`."
            ) from None

    def _export(self, output: str | None) -> None:
        text = export_text()
        if output is None:
            self.stdout.write(text, ending="")
            return
        Path(output).write_text(text, encoding="utf-8")
        self.stderr.write(f"Wrote the setup to {output}.")

    def _apply(self, file: str, *, dry_run: bool, prune: bool) -> None:
        where = "stdin" if file == "-" else file
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {where}: {exc.strerror or exc}.") from None
        try:
            document = read_file(text)
        except FileUnreadable as exc:
            raise CommandError(f"{where}: {exc}") from None
        except ConfigInvalid as exc:
            raise CommandError(_problems(where, exc)) from None

        def announce(items: list[ItemPlan]) -> None:
            self.stdout.write(render(items, dry_run=dry_run), ending="")

        try:
            items = apply_document(document, prune=prune, dry_run=dry_run, announce=announce)
        except ConfigInvalid as exc:
            raise CommandError(_problems(where, exc)) from None
        if has_changes(items) and not dry_run:
            self.stdout.write("Applied.")


def _problems(where: str, exc: ConfigInvalid) -> str:
    listed = "\n".join(f"  {problem}" for problem in exc.problems)
    return f"{where} was not applied, nothing changed:\n{listed}"
