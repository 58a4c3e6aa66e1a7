"""Budgets and prices as a client and the ledger see them: insufficient_quota, x-portico-cost, alerts.

Every request here costs a known amount: the route's output price is $0.10 a
token, its input price nothing, each request asks for at most five tokens and
the fake upstream answers with exactly five. So the worst case Portico reserves
is the cost it charges: $0.50 a request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from django.utils import timezone

from billing.models import Budget, BudgetAlert, Price, UsageRecord
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Spend some money"}]
ANSWER = "one two three four five"
PER_REQUEST = Decimal("0.5")
LEDGER_WITHIN = 5.0  # seconds for a row to go from a server's spool to the database (flushed every 0.5 s)


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER, prompt_tokens=7))
    Price.objects.create(
        route=upstream_route.model,
        effective_from=timezone.now() - timedelta(days=1),
        input_per_million=Decimal("0"),
        output_per_million=Decimal("100000"),
    )
    return upstream_route


@pytest.fixture
def teammate(key: IssuedKey) -> IssuedKey:
    return make_key(tenant=key.api_key.tenant, name="teammate")


@pytest.fixture
def outsider(committed_db: None, tag: str) -> IssuedKey:
    return make_key(tenant=make_tenant(slug=f"outsider-{tag}"), name="outsider")


def body(route: ModelRoute, **extra: Any) -> dict[str, Any]:
    return {"model": route.public_id, "messages": HELLO, "max_tokens": len(ANSWER.split()), **extra}


def chat(server: PorticoServer, key: IssuedKey, route: ModelRoute, **extra: Any) -> httpx.Response:
    return server.http.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {key.plaintext}"}, json=body(route, **extra)
    )


def statuses(server: PorticoServer, key: IssuedKey, route: ModelRoute, count: int) -> list[int]:
    return [chat(server, key, route).status_code for _ in range(count)]


def eventually(check: Callable[[], bool], *, within: float = LEDGER_WITHIN) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.05)


def ledger(count: int, **filters: Any) -> list[UsageRecord]:
    """The ledger rows matching `filters`, once there are `count` of them, oldest first."""
    rows = UsageRecord.objects.filter(**filters).order_by("created_at")
    eventually(lambda: rows.count() >= count)
    found = list(rows)
    assert len(found) == count
    return found


def assert_insufficient_quota(response: httpx.Response, *, names: str) -> None:
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("insufficient_quota", None, "insufficient_quota")
    assert error["message"].startswith("You exceeded your current quota")
    assert names in error["message"]


PERIODS = [
    # (period, how its name is written, seconds it lasts at most)
    (Budget.Period.MONTHLY, "%Y-%m", 31 * 86_400),
    (Budget.Period.DAILY, "%Y-%m-%d", 86_400),
    (Budget.Period.NONE, None, 0),
]


@pytest.mark.parametrize(("period", "name_format", "longest"), PERIODS)
def test_requests_pass_until_the_budget_is_spent_then_get_insufficient_quota(
    portico: PorticoServer,
    key: IssuedKey,
    teammate: IssuedKey,
    route: ModelRoute,
    settle: Settle,
    period: str,
    name_format: str | None,
    longest: int,
) -> None:
    Budget.objects.create(api_key=key.api_key, period=period, amount=Decimal("2.00"))
    settle()

    with portico.client(key.plaintext) as client:
        answers = [client.chat.completions.with_raw_response.create(**body(route)) for _ in range(4)]
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**body(route))

    assert [answer.headers["x-portico-cost"] for answer in answers] == ["0.5"] * 4
    error = refused.value
    assert (error.status_code, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    assert isinstance(error.body, dict)
    period_text = f" for {datetime.now(UTC).strftime(name_format)}" if name_format else ""
    assert error.body["message"] == (
        "You exceeded your current quota, please check your plan and billing details. "
        f"Budget of this API key{period_text}: Limit $2.00, Used $2.00."
    )
    retry_after = int(error.response.headers["retry-after"])
    # Until the period ends; a lifetime budget never comes back, and is given the least a header can say.
    assert 1 <= retry_after <= longest if longest else retry_after == 1
    assert statuses(portico, teammate, route, 2) == [200, 200]


def test_concurrent_requests_cannot_overspend_the_budget(
    portico: PorticoServer, second_portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    amount = Decimal("1.20")
    Budget.objects.create(api_key=key.api_key, amount=amount)
    settle(portico, second_portico)
    ready = threading.Barrier(20)
    seen: list[int] = []

    def spend(server: PorticoServer) -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            ready.wait()
            answer = http.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {key.plaintext}"}, json=body(route)
            )
        seen.append(answer.status_code)

    threads = [threading.Thread(target=spend, args=((portico, second_portico)[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    rows = ledger(20, api_key_id=key.api_key.pk)
    spent = sum((row.cost for row in rows), Decimal(0))
    # Admitted while the spend reserved so far was under the amount: $0, $0.50 and $1.00.
    assert Counter(seen) == {200: 3, 429: 17}
    assert spent <= amount + PER_REQUEST
    assert spent == 3 * PER_REQUEST
    assert Counter((row.status, row.cost) for row in rows) == {(200, PER_REQUEST): 3, (429, Decimal(0)): 17}


def test_a_tenant_budget_is_shared_by_its_keys_and_spares_other_tenants(
    portico: PorticoServer,
    key: IssuedKey,
    teammate: IssuedKey,
    outsider: IssuedKey,
    route: ModelRoute,
    settle: Settle,
) -> None:
    Budget.objects.create(tenant=key.api_key.tenant, amount=Decimal("1.00"))
    settle()

    assert statuses(portico, key, route, 1) == [200]
    assert statuses(portico, teammate, route, 1) == [200]
    refused = [chat(portico, key, route), chat(portico, teammate, route)]

    for answer in refused:
        assert_insufficient_quota(answer, names="Budget of your organization for")
        assert "Limit $1.00, Used $1.00." in answer.json()["error"]["message"]
    assert statuses(portico, outsider, route, 3) == [200] * 3


def test_a_soft_alert_is_recorded_once_spend_crosses_the_soft_limit(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    budget = Budget.objects.create(api_key=key.api_key, amount=Decimal("2.00"), soft_limit_percent=50)
    settle()
    month = datetime.now(UTC).strftime("%Y-%m")

    assert statuses(portico, key, route, 1) == [200]
    ledger(1, api_key_id=key.api_key.pk)  # 25 % spent, and written before the next request
    assert statuses(portico, key, route, 1) == [200]
    eventually(lambda: BudgetAlert.objects.filter(budget=budget, level="soft").exists())

    [soft] = BudgetAlert.objects.filter(budget=budget)
    # Recorded when the second request's row landed: had the first one (25 %) raised it, it would say $0.50.
    assert (soft.level, soft.period, soft.spent) == ("soft", month, Decimal("1.00"))

    assert statuses(portico, key, route, 3) == [200, 200, 429]
    eventually(lambda: BudgetAlert.objects.filter(budget=budget, level="hard").exists())
    alerts = {alert.level: alert for alert in BudgetAlert.objects.filter(budget=budget)}
    assert set(alerts) == {"soft", "hard"}
    assert alerts["soft"].pk == soft.pk
    assert (alerts["hard"].period, alerts["hard"].spent) == (month, Decimal("2.00"))


@pytest.mark.parametrize(
    ("input_price", "output_price", "cost"),
    [
        ("2.5", "10", "0.0000675"),  # 7 prompt tokens at $2.50/M, 5 completion tokens at $10/M
        ("0.15", "0.6", "0.00000405"),
        ("0", "0", "0"),
    ],
)
def test_the_cost_header_of_an_answer_is_its_ledger_rows_cost(
    portico: PorticoServer,
    key: IssuedKey,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    input_price: str,
    output_price: str,
    cost: str,
) -> None:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER, prompt_tokens=7))
    Price.objects.create(
        route=upstream_route.model,
        effective_from=timezone.now() - timedelta(hours=1),
        input_per_million=Decimal(input_price),
        output_per_million=Decimal(output_price),
    )
    settle()

    answer = chat(portico, key, upstream_route)

    assert answer.headers["x-portico-cost"] == cost
    [row] = ledger(1, request_id=answer.headers["x-request-id"])
    assert row.cost == Decimal(cost)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (7, 5, False)


def test_a_price_change_does_not_rewrite_past_ledger_rows(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    settle()
    before = chat(portico, key, route)
    Price.objects.create(
        route=route.model,
        effective_from=timezone.now(),
        input_per_million=Decimal("0"),
        output_per_million=Decimal("300000"),
    )
    settle()

    after = chat(portico, key, route)

    assert (before.headers["x-portico-cost"], after.headers["x-portico-cost"]) == ("0.5", "1.5")
    rows = ledger(2, api_key_id=key.api_key.pk)
    assert [row.request_id for row in rows] == [before.headers["x-request-id"], after.headers["x-request-id"]]
    assert [row.cost for row in rows] == [Decimal("0.5"), Decimal("1.5")]


def test_a_price_that_takes_effect_later_is_not_charged_yet(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    Price.objects.create(
        route=route.model,
        effective_from=timezone.now() + timedelta(hours=1),
        input_per_million=Decimal("0"),
        output_per_million=Decimal("300000"),
    )
    settle()

    answer = chat(portico, key, route)

    assert answer.headers["x-portico-cost"] == "0.5"
    [row] = ledger(1, api_key_id=key.api_key.pk)
    assert row.cost == PER_REQUEST
