"""A call as billing sees it: described to the meter, refusals mapped to the error tree, finished once.

What the limiter is asked and what the ledger line holds in detail is billing's
(billing/tests/test_metering.py); here, that a `Call` reaches the meter whole and
that each refusal comes back to the client as the right OpenAI error. No servers
and no database: the limiter is a `LocalLimiter`, the ledger a spool file in a
temporary directory.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import override_settings

from billing import tokens
from billing.facade import BillingSnapshot, BudgetInfo, LimitInfo
from billing.limits import Ask, LimiterFailed, LimiterUnavailable, LocalLimiter, Ticket, Verdict
from billing.metering import Meter
from billing.money import PriceInfo, PriceSchedule
from gateway import accounting
from gateway.accounting import Call, admit, counted_usage, finish
from gateway.errors import InternalError, LimitsUnavailable, QuotaExceeded, RateLimited, UpstreamTimeout
from providers.facade import DEFAULT_RETRY_ON, ModelInfo, RouteInfo
from providers.tests.factories import make_provider_info
from tenants.facade import KeyGrant

NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
SEPTEMBER_ENDS = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
KEY, TENANT = 12, 3
MODEL = "gpt-test"
UPSTREAM_MODEL = "gpt-4o-2024-08-06"
HELLO = [{"role": "user", "content": "Count these tokens for me"}]

GRANT = KeyGrant(
    key_id=KEY,
    prefix="pk-test",
    tenant_id=TENANT,
    tenant_slug="acme",
    digest="unused",
    expires_at=None,
    allowed_models=None,
)


def route(*, max_output_tokens: int | None = None) -> RouteInfo:
    return RouteInfo(
        id=7,
        public_id=MODEL,
        provider=make_provider_info(name="openai-main"),
        upstream_model=UPSTREAM_MODEL,
        owned_by="portico",
        created=0,
        context_window=None,
        max_output_tokens=max_output_tokens,
        capabilities=frozenset({"chat", "streaming"}),
    )


def model_of(deployment: RouteInfo) -> ModelInfo:
    return ModelInfo(
        public_id=deployment.public_id,
        owned_by="portico",
        created=0,
        context_window=deployment.context_window,
        max_output_tokens=deployment.max_output_tokens,
        capabilities=deployment.capabilities,
        model_family="",
        strategy="priority",
        fallbacks=(),
        retry_on=DEFAULT_RETRY_ON,
        mid_stream_recovery=False,
        ensemble="",
        timeout=None,
        first_byte_timeout=None,
        stall_timeout=None,
        routes=(deployment,),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class DownLimiter(LocalLimiter):
    """Redis is away and Portico was told to fail closed."""

    async def acquire(self, ask: Ask) -> Verdict:
        raise LimiterUnavailable("Redis does not answer")


class FailingLimiter(LocalLimiter):
    """The limiter's script failed on this request's keys (what Redis said is for the log, not the client)."""

    async def acquire(self, ask: Ask) -> Verdict:
        raise LimiterFailed("WRONGTYPE Operation against a key holding the wrong kind of value (portico:budget:x)")


class SettleLog(LocalLimiter):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.settled: list[tuple[Ticket, int, int]] = []

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[None]:
        return self.settle(ticket, tokens=tokens, cost=cost)

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None:
        self.settled.append((ticket, tokens, cost))
        await super().settle(ticket, tokens=tokens, cost=cost)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def meter(clock: FakeClock, ledger_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    """A fresh Meter in place of the process's own: a limiter on a fake clock, no ledger writer."""
    fresh = Meter()
    fresh.limiter = SettleLog(clock)
    monkeypatch.setattr(accounting, "accounts", fresh)
    with override_settings(PORTICO_LEDGER_DIR=str(ledger_dir)):
        yield fresh


def ledger_lines(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted(directory.iterdir()) for line in path.read_bytes().splitlines()]


def new_call(*, body: dict[str, Any] | None = None, target: RouteInfo | None = None, at: float = NOW) -> Call:
    call = Call(
        request_id="req_1",
        client_request_id="client-7",
        grant=GRANT,
        model=model_of(target or route()),
        operation="chat",
        body={"model": MODEL, "messages": HELLO, **(body or {})},
    )
    call.started_at = at
    return call


def snapshot(
    *,
    limits: dict[tuple[str, int, str], LimitInfo] | None = None,
    budgets: dict[tuple[str, int], BudgetInfo] | None = None,
    prices: dict[str, PriceSchedule] | None = None,
) -> BillingSnapshot:
    limits = limits or {}
    budgets = budgets or {}
    limited = frozenset((kind, owner) for kind, owner, _model in limits) | frozenset(budgets)
    return BillingSnapshot(prices=prices or {}, limits=limits, budgets=budgets, limited=limited)


def rpm(value: int) -> LimitInfo:
    return LimitInfo(requests_per_minute=value, tokens_per_minute=None, max_concurrent=None)


def spent_budget() -> BudgetInfo:
    return BudgetInfo(
        id=1, period="monthly", amount=Decimal(2), soft_limit_percent=80, period_name="2026-09", spent=Decimal(2)
    )


def price(input_per_million: str, output_per_million: str) -> dict[str, PriceSchedule]:
    info = PriceInfo(NOW - 60, Decimal(input_per_million), Decimal(output_per_million), Decimal(input_per_million))
    return {MODEL: PriceSchedule(starts=(info.since,), prices=(info,))}


# --- admission -----------------------------------------------------------------------------------


async def test_a_key_without_limits_is_admitted_with_no_headers(meter: Meter) -> None:
    call = new_call()

    assert await admit(call, snapshot()) == {}
    assert call.admission is None  # nothing reserved, nothing to settle


async def test_an_admitted_call_keeps_its_reservation_and_prompt_count(meter: Meter) -> None:
    call = new_call(body={"max_tokens": 50}, target=route(max_output_tokens=4096))
    limits = {("key", KEY, ""): LimitInfo(requests_per_minute=10, tokens_per_minute=6000, max_concurrent=None)}

    headers = await admit(call, snapshot(limits=limits))

    assert headers["x-ratelimit-remaining-tokens"] == "5938"  # 12 prompt tokens and 50 of output reserved
    assert call.prompt_estimate == 12
    assert call.admission is not None
    assert call.admission.ticket is not None
    assert call.admission.ticket.request_id == "req_1"


async def test_the_call_after_the_rpm_is_rate_limited_with_retry_after(meter: Meter, clock: FakeClock) -> None:
    billing = snapshot(limits={("key", KEY, ""): rpm(2)})
    await admit(new_call(), billing)
    clock.now += 0.5
    await admit(new_call(at=clock.now), billing)

    refused = new_call(at=clock.now)
    with pytest.raises(RateLimited) as error:
        await admit(refused, billing)

    assert (error.value.status, error.value.type, error.value.code) == (429, "requests", "rate_limit_exceeded")
    assert error.value.message == (
        "Rate limit reached for requests per minute (RPM) on this API key: Limit 2, Used 2, Requested 1. "
        "Please try again in 29.5s."
    )
    assert error.value.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "59.5s",
        "retry-after": "30",  # 29.5 s, in whole seconds rounded up
    }
    assert refused.admission is None


@pytest.mark.parametrize(
    ("limit", "kind"),
    [
        (LimitInfo(requests_per_minute=None, tokens_per_minute=10, max_concurrent=None), "tokens"),
        (LimitInfo(requests_per_minute=None, tokens_per_minute=None, max_concurrent=0), "requests"),
        (LimitInfo(requests_per_minute=0, tokens_per_minute=None, max_concurrent=None), "requests"),
    ],
    ids=["more tokens than the tpm", "no concurrency at all", "an rpm of zero"],
)
async def test_a_refusal_that_waiting_cannot_cure_still_says_retry_after_one_second(
    meter: Meter, limit: LimitInfo, kind: str
) -> None:
    with pytest.raises(RateLimited) as error:
        await admit(new_call(body={"max_tokens": 100}), snapshot(limits={("key", KEY, ""): limit}))

    assert (error.value.type, error.value.code) == (kind, "rate_limit_exceeded")
    assert error.value.headers["retry-after"] == "1"


async def test_a_spent_budget_is_insufficient_quota_until_the_period_ends(meter: Meter) -> None:
    with pytest.raises(QuotaExceeded) as error:
        await admit(new_call(), snapshot(budgets={("tenant", TENANT): spent_budget()}))

    assert (error.value.status, error.value.type, error.value.code) == (429, "insufficient_quota", "insufficient_quota")
    assert error.value.message == (
        "You exceeded your current quota, please check your plan and billing details. "
        "Budget of your organization for 2026-09: Limit $2.00, Used $2.00."
    )
    assert error.value.headers == {"retry-after": str(math.ceil(SEPTEMBER_ENDS - NOW))}


async def test_an_unreachable_limiter_that_fails_closed_is_a_503(meter: Meter, clock: FakeClock) -> None:
    meter.limiter = DownLimiter(clock=clock)
    call = new_call()

    with pytest.raises(LimitsUnavailable) as error:
        await admit(call, snapshot(limits={("key", KEY, ""): rpm(10)}))

    assert (error.value.status, error.value.type, error.value.code) == (503, "api_error", "limiter_unavailable")
    assert call.admission is None


async def test_a_limiter_failing_on_one_request_is_a_500_server_error_for_it_alone(
    meter: Meter, clock: FakeClock
) -> None:
    meter.limiter = FailingLimiter(clock=clock)
    call = new_call()

    with pytest.raises(InternalError) as error:
        await admit(call, snapshot(limits={("key", KEY, ""): rpm(10)}))

    assert error.value.body() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert error.value.status == 500
    assert call.admission is None


# --- finishing -----------------------------------------------------------------------------------


async def test_finishing_records_the_call_as_it_ended(meter: Meter, ledger_dir: Path) -> None:
    call = new_call(body={"stream": True})
    call.started = time.monotonic() - 1  # it began a second ago, its first token came after 0.25 s
    call.first_token = call.started + 0.25
    call.usage = {
        "prompt_tokens": 40,
        "completion_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 8, "cache_creation_tokens": 12},
    }
    call.disconnected = True
    call.attempts = 2  # the second deployment tried served it
    call.upstream_id = "msg_01"
    call.overhead_ms = 3
    costs = {7: price("1", "4")[MODEL]}  # what the provider charges for deployment 7

    cost = finish(call, dataclasses.replace(snapshot(prices=price("2.5", "10")), costs=costs))

    assert cost == Decimal("0.00025")
    [line] = ledger_lines(ledger_dir)
    assert line.pop("latency_ms") >= 1000
    assert line == {
        "request_id": "req_1",
        "client_request_id": "client-7",
        "created_at": NOW,
        "tenant_id": TENANT,
        "api_key_id": KEY,
        "key_prefix": "pk-test",
        "operation": "chat",
        "model": MODEL,
        "provider": "openai-main",
        "upstream_model": UPSTREAM_MODEL,
        "prompt_tokens": 40,
        "completion_tokens": 15,
        "cached_tokens": 8,
        "reasoning_tokens": 0,
        "tokens_estimated": False,
        "cost": "0.00025",
        "first_token_ms": 250,
        "status": 200,
        "error_type": "",
        "streamed": True,
        "client_disconnected": True,
        "deployment_id": 7,
        "deployment": f"openai-main/{UPSTREAM_MODEL}",
        "attempts": 2,
        "provider_cost": "0.0001",  # (40 x 1 + 15 x 4) / 1M
        "batch_id": None,
        "queue_ms": None,
        "cache_creation_tokens": 12,
        "upstream_id": "msg_01",
        "overhead_ms": 3,
    }


async def test_a_failed_call_is_recorded_with_its_status_and_error_type(meter: Meter, ledger_dir: Path) -> None:
    call = new_call()
    call.fail(UpstreamTimeout("The upstream provider did not answer in time."))

    assert finish(call, snapshot(prices=price("5", "5"))) == 0

    [line] = ledger_lines(ledger_dir)
    assert (line["status"], line["error_type"], line["prompt_tokens"]) == (504, "upstream_timeout", 0)
    # Refused before any attempt: no deployment served it.
    assert (line["deployment_id"], line["deployment"], line["attempts"]) == (None, "", 0)


async def test_a_call_is_finished_once(meter: Meter, ledger_dir: Path) -> None:
    call = new_call()
    billing = snapshot(limits={("key", KEY, ""): rpm(10)}, prices=price("1", "1"))
    await admit(call, billing)
    call.usage = {"prompt_tokens": 3, "completion_tokens": 2}

    first, second = finish(call, billing), finish(call, billing)
    await meter.drain()

    assert (first, second) == (Decimal("0.000005"), Decimal(0))
    assert len(ledger_lines(ledger_dir)) == 1
    assert isinstance(meter.limiter, SettleLog)
    assert meter.limiter.settled == [(call.admission.ticket, 5, 5000)]  # type: ignore[union-attr]


def stream_chunk(content: str) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})


async def test_the_usage_counted_for_a_stream_comes_from_what_it_relayed(meter: Meter) -> None:
    call = new_call(body={"stream": True})
    call.outputs = [stream_chunk("Hello"), stream_chunk(" there")]

    usage = counted_usage(call)

    prompt = tokens.count_chat_prompt(call.body, model=UPSTREAM_MODEL)
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, tokens.count_text("Hello there", model="gpt-4o"))
    assert call.prompt_estimate == prompt  # counted once for the usage chunk and the ledger line
