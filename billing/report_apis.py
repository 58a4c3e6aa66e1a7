"""The usage export of the management API: grouped totals from the rollups, streamed as CSV or as a JSON array.

    GET /api/usage/report/?group_by=day,model,key&from=2026-11-01&to=2026-11-30&format=csv&tenant=3

Operators export any tenant, or every one; tenant admins their tenants only: a
tenant they do not manage reads as one without usage (an empty export), as in
`/api/usage/?tenant=`. Rows come from `billing.reports.report_rows` a chunk
at a time and are written out as they come, so a year of a large tenant never
sits in memory. The first chunk is read before the answer starts, so a
database that is away is a JSON 503 rather than a cut-short 200. Money is a
decimal string, never a float.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from billing.money import usd
from billing.report_values import ReportRow
from billing.reports import GROUPINGS, report_rows
from tenants.apis import IsOperatorOrTenantAdmin, is_operator, tenants_managed_by
from tenants.authentication import ManagementTokenAuthentication
from tenants.serializers import RowIdFilter

# The columns each grouping adds, in this order, before the sums every row has.
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "model": ("model",),
    "key": ("tenant_id", "api_key_id", "key_prefix"),
    "deployment": ("deployment_id", "deployment"),
    "provider": ("provider",),
}
SUM_COLUMNS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "cost",
    "provider_cost",
)
# Shown to operators only: tenants see what they are charged, not what the providers behind it charge.
OPERATOR_COLUMNS = frozenset({"provider_cost"})
PROVIDER_GROUPS = frozenset({"deployment", "provider"})
ROWS_PER_CHUNK = 500  # rows per write: few enough to start at once, enough that each write is worth it

assert set(GROUP_COLUMNS) == set(GROUPINGS), "every grouping of the reports has its columns here"


@extend_schema_field(OpenApiTypes.STR)
class GroupByField(serializers.CharField):
    """Comma-separated grouping names, each once: `day,model,key`."""

    def to_internal_value(self, data: Any) -> list[str]:
        names = [name.strip() for name in str(super().to_internal_value(data)).split(",") if name.strip()]
        unknown = sorted({name for name in names if name not in GROUPINGS})
        if unknown:
            raise serializers.ValidationError(
                f"Unknown grouping: {', '.join(unknown)}. Choose from {', '.join(GROUPINGS)}."
            )
        if len(set(names)) != len(names):
            raise serializers.ValidationError("Name each grouping once.")
        if not names:
            raise serializers.ValidationError(f"Name at least one grouping of {', '.join(GROUPINGS)}.")
        return names


class ReportQuerySerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword, so the fields are listed here rather than declared as attributes.
        return {
            "group_by": GroupByField(
                required=False, help_text=f"Comma-separated, any of: {', '.join(GROUPINGS)} (default day)."
            ),
            "from": serializers.DateField(help_text="The first UTC day, YYYY-MM-DD."),
            "to": serializers.DateField(help_text="The last UTC day, included."),
            "format": serializers.ChoiceField(choices=["csv", "json"], default="csv"),
            "tenant": RowIdFilter(help_text="Only this tenant's usage."),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"to": "The last day comes on or after the first."})
        attrs.setdefault("group_by", ["day"])
        return attrs


_ROW_SCHEMA = inline_serializer(
    "UsageReportRow",
    fields={
        "day": serializers.DateField(required=False, help_text="With group_by day."),
        "model": serializers.CharField(required=False, help_text="With group_by model."),
        "tenant_id": serializers.IntegerField(required=False, help_text="With group_by key."),
        "api_key_id": serializers.IntegerField(required=False, help_text="With group_by key; 0 for none."),
        "key_prefix": serializers.CharField(required=False, help_text="With group_by key."),
        "deployment_id": serializers.IntegerField(
            required=False, help_text="With group_by deployment; 0 when none was tried."
        ),
        "deployment": serializers.CharField(required=False, help_text="With group_by deployment."),
        "provider": serializers.CharField(required=False, help_text="With group_by provider."),
        **{name: serializers.IntegerField() for name in SUM_COLUMNS if name not in ("cost", "provider_cost")},
        "cost": serializers.CharField(help_text="USD charged to the tenant, a decimal string."),
        "provider_cost": serializers.CharField(help_text="USD the providers charge, where known."),
    },
    many=True,
)


class UsageReportView(APIView):
    """Grouped usage totals over whole UTC days, from the rollups."""

    # An operator signed in to the console downloads from its report pages; a GET needs no CSRF token.
    authentication_classes = [ManagementTokenAuthentication, SessionAuthentication]
    permission_classes = [IsOperatorOrTenantAdmin]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        # `format` names the export's format here, not one of DRF's renderers; refusals are JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        summary="Export usage totals grouped by day, model, key, deployment or provider (CSV or JSON, streamed)",
        parameters=[ReportQuerySerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): _ROW_SCHEMA},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        user = request.user
        operator = is_operator(user)
        if not operator and PROVIDER_GROUPS.intersection(params["group_by"]):
            # What each deployment and provider served is the operator's business, as is what they charge.
            raise serializers.ValidationError(
                {"group_by": ["Grouping by deployment or provider is for operators only."]}
            )
        rows = report_rows(
            tenant_id=params.get("tenant"),
            start=params["from"],
            end=params["to"],
            group_by=params["group_by"],
            tenant_ids=None if operator else list(tenants_managed_by(user).values_list("pk", flat=True)),
        )
        name = f"portico-usage-{params['from']}-{params['to']}.{params['format']}"
        columns = export_columns(params["group_by"], operator=operator)
        return export_response(request._request, rows, columns=columns, fmt=params["format"], filename=name)


def export_columns(group_by: Sequence[str], *, operator: bool) -> list[str]:
    """The columns of an export: its groups', then the sums; what providers charge only for operators."""
    sums = SUM_COLUMNS if operator else tuple(column for column in SUM_COLUMNS if column not in OPERATOR_COLUMNS)
    return [column for name in group_by for column in GROUP_COLUMNS[name]] + list(sums)


def export_response(
    request: HttpRequest, rows: Iterator[ReportRow], *, columns: list[str], fmt: str, filename: str
) -> StreamingHttpResponse:
    """`rows` as a CSV or JSON (`fmt`) download, streamed; the tenant portal's export answers with it too."""
    body = _started(_csv(rows, columns) if fmt == "csv" else _json(rows, columns))
    response = StreamingHttpResponse(
        _async_chunks(body) if isinstance(request, ASGIRequest) else body,
        content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _value(row: ReportRow, column: str) -> Any:
    value = getattr(row, column)
    if isinstance(value, Decimal):
        return usd(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class _Line:
    """What csv.writer writes to: it hands the line back instead of keeping it."""

    def write(self, line: str) -> str:
        return line


def _csv(rows: Iterator[ReportRow], columns: list[str]) -> Generator[bytes, None, None]:
    writer = csv.writer(_Line(), lineterminator="\n")
    head = writer.writerow(columns)  # sent with the first rows, so that making the first part runs the query
    for chunk in _chunks(rows):
        yield (head + "".join(writer.writerow([_value(row, column) for column in columns]) for row in chunk)).encode()
        head = ""
    if head:
        yield head.encode()


def _json(rows: Iterator[ReportRow], columns: list[str]) -> Generator[bytes, None, None]:
    """A JSON array, one object a line."""
    separator = b"[\n"
    for chunk in _chunks(rows):
        part = []
        for row in chunk:
            part += [separator, orjson.dumps({column: _value(row, column) for column in columns})]
            separator = b",\n"
        yield b"".join(part)
    yield b"[]\n" if separator == b"[\n" else b"\n]\n"


def _chunks(rows: Iterator[ReportRow]) -> Iterator[list[ReportRow]]:
    while chunk := list(islice(rows, ROWS_PER_CHUNK)):
        yield chunk


def _started(body: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """`body` with its first part made now: its query runs while an error can still be the answer."""
    first = next(body)
    return _resumed(first, body)


def _resumed(first: bytes, body: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    yield first
    yield from body


def _next_part(body: Generator[bytes, None, None]) -> bytes | None:
    return next(body, None)


async def _async_chunks(body: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """`body` for an ASGI server, which would otherwise read a plain iterator whole before sending any of it.

    Each part is made in the request's own thread, the one that holds its database connection and cursor.
    """
    take = sync_to_async(_next_part, thread_sensitive=True)
    try:
        while (part := await take(body)) is not None:
            yield part
    finally:
        await sync_to_async(body.close, thread_sensitive=True)()
