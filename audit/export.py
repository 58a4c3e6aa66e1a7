"""The audit log as CSV, for the admin's export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils import timezone

from audit.models import AuditEntry

COLUMNS = ("time", "actor", "actor kind", "origin", "from", "action", "model", "object id", "object", "before", "after")
# A cell starting with these is a formula to a spreadsheet; object names and values come from users.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)


def entry_row(entry: AuditEntry) -> list[str]:
    values = (
        entry.created_at.isoformat(),
        entry.actor,
        entry.actor_kind,
        entry.origin,
        entry.source,
        entry.action,
        entry.model_label,
        entry.object_id,
        entry.object_repr,
        _json(entry.before),
        _json(entry.after),
    )
    return [_cell(value) for value in values]


def csv_response(entries: Iterable[AuditEntry]) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(entry_row(entry) for entry in entries)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="portico-audit-{stamp}.csv"'
    return response
