"""GET /api/usage/report/: the export adds up to the ledger, shows each caller only their tenants, and streams.

The tenant admin manages acme, whose keys are `owner` and `teammate`;
`outsider` is a key of globex, whose usage they must never see.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, connections
from django.db.models import Sum
from django.test import AsyncClient

from billing import report_apis
from billing.models import UsageRecord
from billing.rollups import usage_rollups_update
from billing.tests.factories import make_user, token_headers
from billing.tests.ledger_rows import make_ledger

pytestmark = pytest.mark.django_db

URL = "/api/usage/report/"
START = datetime(2026, 11, 1, tzinfo=UTC)
NOVEMBER = "from=2026-11-01&to=2026-11-30"


@pytest.fixture
def acme_admin(tenant) -> dict[str, str]:
    return token_headers(make_user(admin_of=[tenant]))


@pytest.fixture
def operator(db) -> dict[str, str]:
    return token_headers(make_user(staff=True))


@pytest.fixture
def ledger(owner, teammate, outsider) -> None:
    make_ledger(keys=[owner.api_key, teammate.api_key, outsider.api_key], rows=900, start=START, hours=20 * 24)
    usage_rollups_update()


def _body(response) -> str:
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def _csv(response) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(_body(response))))


def _ledger_cost(column: str = "cost", **filters) -> Decimal:
    total = UsageRecord.objects.filter(**filters).aggregate(total=Sum(column))["total"] or Decimal(0)
    # PostgreSQL sums numerics exactly; SQLite keeps them as doubles, good to far below a cent.
    return total if connection.vendor == "postgresql" else total.quantize(Decimal("1e-8"))


def _sum(rows, column: str) -> Decimal:
    total = sum((Decimal(row[column]) for row in rows), Decimal(0))
    return total if connection.vendor == "postgresql" else total.quantize(Decimal("1e-8"))


# --- The export -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ledger")
def test_the_csv_export_adds_up_to_the_ledger_to_the_cent(client, operator):
    rows = _csv(client.get(f"{URL}?group_by=day,model,key&{NOVEMBER}&format=csv", headers=operator))

    assert list(rows[0]) == [
        "day",
        "model",
        "tenant_id",
        "api_key_id",
        "key_prefix",
        *("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens"),
        *("reasoning_tokens", "cost", "provider_cost"),
    ]
    assert _sum(rows, "cost") == _ledger_cost()
    for tokens in ("cached_tokens", "cache_creation_tokens"):
        written = UsageRecord.objects.aggregate(total=Sum(tokens))["total"]
        assert sum(int(row[tokens]) for row in rows) == written > 0
    assert _sum(rows, "provider_cost") == _ledger_cost("provider_cost")
    assert sum(int(row["requests"]) for row in rows) == UsageRecord.objects.count()
    assert len({(row["day"], row["model"], row["api_key_id"]) for row in rows}) == len(rows)


@pytest.mark.usefixtures("ledger")
def test_the_json_export_is_an_array_with_money_as_decimal_strings(client, operator):
    response = client.get(f"{URL}?group_by=provider&{NOVEMBER}&format=json", headers=operator)

    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="portico-usage-2026-11-01-2026-11-30.json"'
    rows = json.loads(_body(response))
    assert {row["provider"] for row in rows} == set(UsageRecord.objects.values_list("provider", flat=True))
    assert all(isinstance(row["cost"], str) and isinstance(row["requests"], int) for row in rows)
    assert _sum(rows, "cost") == _ledger_cost()


@pytest.mark.usefixtures("ledger")
def test_the_export_keeps_to_its_days(client, operator):
    rows = _csv(client.get(f"{URL}?group_by=day&from=2026-11-03&to=2026-11-05", headers=operator))

    assert [row["day"] for row in rows] == ["2026-11-03", "2026-11-04", "2026-11-05"]
    in_range = {
        "created_at__gte": datetime(2026, 11, 3, tzinfo=UTC),
        "created_at__lt": datetime(2026, 11, 6, tzinfo=UTC),
    }
    assert _sum(rows, "cost") == _ledger_cost(**in_range)


def test_an_export_of_a_quiet_period_is_empty(client, operator):
    assert _csv(client.get(f"{URL}?group_by=day&from=2020-01-01&to=2020-01-02", headers=operator)) == []
    assert json.loads(_body(client.get(f"{URL}?{NOVEMBER}&format=json", headers=operator))) == []


@pytest.mark.usefixtures("ledger")
def test_a_period_up_to_the_last_day_a_date_can_name_is_exported(client, operator):
    rows = _csv(client.get(f"{URL}?group_by=day&from=2026-11-19&to=9999-12-31", headers=operator))

    assert [row["day"] for row in rows] == ["2026-11-19", "2026-11-20"]  # the ledger's last two days
    assert _csv(client.get(f"{URL}?from=9999-12-31&to=9999-12-31", headers=operator)) == []


def test_a_database_away_before_the_first_row_is_a_json_503_not_a_cut_short_200(client, operator, monkeypatch):
    def unreachable(**_: object) -> Iterator[object]:
        raise OperationalError("connection refused")
        yield  # a generator, as report_rows' rows are: the query runs when the first row is asked for

    monkeypatch.setattr(report_apis, "report_rows", unreachable)

    response = client.get(f"{URL}?{NOVEMBER}", headers=operator)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


# --- Who sees what --------------------------------------------------------------------------------


@pytest.mark.usefixtures("ledger")
def test_a_tenant_admin_exports_their_tenants_usage_only(client, acme_admin, tenant):
    rows = _csv(client.get(f"{URL}?group_by=key&{NOVEMBER}", headers=acme_admin))

    assert {int(row["tenant_id"]) for row in rows} == {tenant.pk}
    assert _sum(rows, "cost") == _ledger_cost(tenant_id=tenant.pk)


@pytest.mark.usefixtures("ledger")
def test_a_tenant_admin_sees_what_their_tenant_is_charged_not_what_providers_charge(client, acme_admin, operator):
    tenants_view = _csv(client.get(f"{URL}?group_by=model&{NOVEMBER}", headers=acme_admin))
    operators_view = _csv(client.get(f"{URL}?group_by=model&{NOVEMBER}", headers=operator))

    assert tenants_view
    assert "provider_cost" not in tenants_view[0]
    assert "provider_cost" in operators_view[0]


@pytest.mark.usefixtures("ledger")
@pytest.mark.parametrize("grouping", ["deployment", "provider", "day,provider"])
def test_only_operators_group_usage_by_deployment_or_provider(client, acme_admin, operator, grouping):
    refused = client.get(f"{URL}?group_by={grouping}&{NOVEMBER}", headers=acme_admin)

    assert refused.status_code == 400
    assert "operators only" in refused.json()["group_by"][0]
    assert client.get(f"{URL}?group_by={grouping}&{NOVEMBER}", headers=operator).status_code == 200


@pytest.mark.usefixtures("ledger")
def test_another_tenants_usage_does_not_exist_for_a_tenant_admin(client, acme_admin, outsider):
    globex = outsider.api_key.tenant_id

    assert _csv(client.get(f"{URL}?group_by=key&{NOVEMBER}&tenant={globex}", headers=acme_admin)) == []
    assert json.loads(_body(client.get(f"{URL}?{NOVEMBER}&tenant={globex}&format=json", headers=acme_admin))) == []


@pytest.mark.usefixtures("ledger")
def test_an_operator_exports_any_one_tenant(client, operator, outsider):
    globex = outsider.api_key.tenant_id

    rows = _csv(client.get(f"{URL}?group_by=key&{NOVEMBER}&tenant={globex}", headers=operator))

    assert {int(row["api_key_id"]) for row in rows} == {outsider.api_key.pk}
    assert _sum(rows, "cost") == _ledger_cost(tenant_id=globex)


def test_the_export_asks_for_a_token_and_refuses_a_user_who_manages_nothing(client):
    assert client.get(f"{URL}?{NOVEMBER}").status_code == 401
    refused = client.get(f"{URL}?{NOVEMBER}", headers=token_headers(make_user()))
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/json"


# --- Bad parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (f"group_by=day,colour&{NOVEMBER}", "group_by", "Unknown grouping: colour. Choose from day, model, key"),
        (f"group_by=day,day&{NOVEMBER}", "group_by", "Name each grouping once."),
        (f"group_by=,&{NOVEMBER}", "group_by", "Name at least one grouping"),
        ("to=2026-11-30", "from", "This field is required."),
        ("from=2026-11-30&to=2026-11-01", "to", "The last day comes on or after the first."),
        ("from=2026-13-01&to=2026-11-30", "from", "Date has wrong format."),
        (f"{NOVEMBER}&format=xml", "format", '"xml" is not a valid choice.'),
        (f"{NOVEMBER}&tenant=acme", "tenant", "A valid integer is required."),
        (f"{NOVEMBER}&tenant=0", "tenant", "Ensure this value is greater than or equal to 1."),
        (f"{NOVEMBER}&tenant=99999999999999999999", "tenant", "Ensure this value is less than or equal to"),
    ],
)
def test_a_bad_parameter_is_a_400_that_says_what_is_wrong(client, operator, query, field, message):
    response = client.get(f"{URL}?{query}", headers=operator)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert message in " ".join(response.json()[field])


def test_the_schema_documents_the_export(client, operator):
    schema = client.get("/api/schema/?format=json", headers=operator).json()

    operation = schema["paths"][URL]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} >= {
        "group_by",
        "from",
        "to",
        "format",
        "tenant",
    }
    assert set(operation["responses"]["200"]["content"]) == {"text/csv", "application/json"}


# --- Under ASGI -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_export_streams_as_it_is_read(owner, outsider):
    # An ASGI server reads a plain iterator whole before sending it (Django warns, which fails the test):
    # the export must hand it an asynchronous one.
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup() -> tuple[dict[str, str], Decimal]:
        make_ledger(keys=[owner.api_key, outsider.api_key], rows=300, start=START, hours=48)
        usage_rollups_update()
        return token_headers(make_user(staff=True)), _ledger_cost()

    headers, cost = await setup()
    try:
        response = await AsyncClient().get(f"{URL}?group_by=day,key&{NOVEMBER}", headers=headers)

        assert response.status_code == 200
        assert response.is_async
        parts = [part async for part in response.streaming_content]
    finally:
        # The thread the view and the setup ran in keeps its connection otherwise; the test database is then
        # still in use when it is dropped.
        await sync_to_async(connections.close_all)()
    rows = list(csv.DictReader(io.StringIO(b"".join(parts).decode())))
    assert _sum(rows, "cost") == cost
