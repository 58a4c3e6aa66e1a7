"""The usage export streams: a part per few rows, made as the client reads, never the whole export at once.

Chunk sizes are made small, so that a few hundred generated rows make many parts.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime

import pytest
from django.db import connections
from django.test import AsyncClient

from billing import report_apis, reports
from billing.report_values import ReportRow
from billing.rollups import usage_rollups_update
from billing.tests.factories import make_user, token_headers
from billing.tests.ledger_rows import make_ledger

pytestmark = pytest.mark.django_db

URL = "/api/usage/report/?group_by=day,model,key&from=2026-11-01&to=2026-11-30"
ROWS_PER_PART = 7


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[ReportRow]:
    """Small chunks, and every report row as it is made."""
    monkeypatch.setattr(report_apis, "ROWS_PER_CHUNK", ROWS_PER_PART)
    monkeypatch.setattr(reports, "REPORT_CHUNK", 5)
    made: list[ReportRow] = []

    def counted(**fields: object) -> ReportRow:
        row = ReportRow(**fields)  # type: ignore[arg-type]
        made.append(row)
        return row

    monkeypatch.setattr(reports, "ReportRow", counted)
    return made


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def ledger(owner, teammate, outsider) -> None:
    make_ledger(
        keys=[owner.api_key, teammate.api_key, outsider.api_key],
        rows=400,
        start=datetime(2026, 11, 1, tzinfo=UTC),
        hours=10 * 24,
    )
    usage_rollups_update()


@pytest.mark.usefixtures("ledger")
def test_the_csv_export_comes_in_parts_made_as_they_are_read(client, operator, built):
    response = client.get(URL, headers=operator)
    assert response.status_code == 200
    assert response.streaming

    parts = iter(response.streaming_content)
    first = next(parts)
    assert len(built) == ROWS_PER_PART  # the first part, made before the answer started: no more rows yet
    assert first.decode().count("\n") == ROWS_PER_PART + 1  # the head line and its rows

    rest = list(parts)
    total = len(built)
    assert total > 10 * ROWS_PER_PART
    assert len(rest) + 1 == math.ceil(total / ROWS_PER_PART)
    assert all(part.decode().count("\n") <= ROWS_PER_PART for part in rest)
    exported = list(csv.DictReader(io.StringIO(b"".join([first, *rest]).decode())))
    assert len(exported) == total
    assert [row["key_prefix"] for row in exported] == [row.key_prefix for row in built]


@pytest.mark.usefixtures("ledger")
def test_the_json_export_comes_in_parts_too(client, operator, built):
    response = client.get(f"{URL}&format=json", headers=operator)

    parts = list(response.streaming_content)

    # One part per chunk of rows, then the array's end.
    assert len(parts) == math.ceil(len(built) / ROWS_PER_PART) + 1
    assert parts[0].startswith(b"[\n{")
    assert parts[-1] == b"\n]\n"


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_parts_reach_the_client_one_by_one(owner, teammate, outsider, built):
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup() -> dict[str, str]:
        make_ledger(
            keys=[owner.api_key, teammate.api_key, outsider.api_key],
            rows=400,
            start=datetime(2026, 11, 1, tzinfo=UTC),
            hours=10 * 24,
        )
        usage_rollups_update()
        return token_headers(make_user(staff=True))

    headers = await setup()
    try:
        response = await AsyncClient().get(URL, headers=headers)
        assert response.is_async
        seen = []
        async for part in response.streaming_content:
            seen.append((len(part), len(built)))
    finally:
        await sync_to_async(connections.close_all)()

    assert len(seen) == math.ceil(len(built) / ROWS_PER_PART) > 10
    # When each part arrived, the rows made so far were its own and those before it: nothing read ahead.
    assert [made for _size, made in seen] == [
        min((index + 1) * ROWS_PER_PART, len(built)) for index in range(len(seen))
    ]
