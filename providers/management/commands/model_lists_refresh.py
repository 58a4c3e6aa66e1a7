"""`portico model_lists_refresh`: read the model lists now, in this process, and say what changed.

Workers refresh the lists on their own (when they start, then as each source is
due); this is for a deployment without them, a script, or an operator in a hurry.
The settings' source (PORTICO_MODEL_LIST_URL) is made or brought in line first.
It exits 1 if a list could not be read.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from providers.model_lists.services import (
    model_list_source_from_settings,
    model_list_source_refresh,
    model_list_sources_due,
)
from providers.models import ModelListSource, RefreshStatus


class Command(BaseCommand):
    help = "Read the model lists and apply them: every enabled source (or those due, or one by name)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--source", metavar="NAME", help="Only this source, enabled or not.")
        parser.add_argument("--due", action="store_true", help="Only the sources due for a refresh.")

    def handle(self, *args: Any, **options: Any) -> None:
        model_list_source_from_settings()
        if options["source"]:
            sources = list(ModelListSource.objects.filter(name=options["source"]))
            if not sources:
                raise CommandError(f"No model-list source is named {options['source']!r}.")
        elif options["due"]:
            sources = list(ModelListSource.objects.filter(pk__in=model_list_sources_due()).order_by("pk"))
        else:
            sources = list(ModelListSource.objects.filter(enabled=True).order_by("pk"))
        failed = 0
        for source in sources:
            refresh = model_list_source_refresh(source=source)
            assert refresh is not None  # only a refresh asked for when due may be skipped
            counts = ", ".join(f"{len(ids)} {key}" for key, ids in refresh.diff.items() if ids) or "no change"
            if refresh.status == RefreshStatus.FAILED:
                failed += 1
                self.stderr.write(f"{source.name}: failed, {refresh.error}")
            else:
                self.stdout.write(f"{source.name}: {counts}; {len(refresh.entry_errors)} entries not applied")
        if failed:
            raise CommandError(f"{failed} of {len(sources)} lists could not be read.", returncode=1)
