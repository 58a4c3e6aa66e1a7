"""Meter.admit() and Meter.finish(): what is asked of the limiter, what it answers, what the ledger gets.

No servers and no database: the snapshot is built by hand, the limiter is a
`LocalLimiter` on a fake clock (wrapped to record what it was asked), and the
ledger is this process's spool file in a temporary directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import override_settings

from billing import metering, tokens
from billing.facade import BillingSnapshot, BudgetInfo, LimitInfo
from billing.limits import COUNTER_MAX, Ask, LimiterFailed, LimiterUnavailable, LocalLimiter, Ticket, Verdict, Window
from billing.limits import Budget as LimiterBudget
from billing.metering import UNCAPPED_OUTPUT_RESERVE, Admission, Meter, MeterAsk, MeterResult
from billing.money import PriceInfo, PriceSchedule, Usage

NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
MINUTE = NOW // 60 * 60  # budgets are built once a minute; their counters' lifetimes count from its start
SEPTEMBER_ENDS = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
DAY_ENDS = datetime(2026, 9, 22, tzinfo=UTC).timestamp()
NANO = 1_000_000_000
KEY, TENANT = 12, 3
MODEL = "gpt-test"
UPSTREAM_MODEL = "gpt-4o-2024-08-06"
HELLO = [{"role": "user", "content": "Count these tokens for me"}]


def prompt_tokens(body: dict[str, Any]) -> int:
    return tokens.count_chat_prompt(body, model=UPSTREAM_MODEL)


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class RecordingLimiter:
    """A LocalLimiter that remembers every ask and settle."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = LocalLimiter(clock=clock)
        self.asks: list[Ask] = []
        self.settled: list[tuple[Ticket, int, int]] = []

    async def acquire(self, ask: Ask) -> Verdict:
        self.asks.append(ask)
        return await self.inner.acquire(ask)

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[None]:
        return self.settle(ticket, tokens=tokens, cost=cost)

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None:
        self.settled.append((ticket, tokens, cost))
        await self.inner.settle(ticket, tokens=tokens, cost=cost)

    async def aclose(self) -> None:
        pass


class DownLimiter(RecordingLimiter):
    """Redis is away and Portico was told to fail closed."""

    async def acquire(self, ask: Ask) -> Verdict:
        raise LimiterUnavailable("Redis does not answer")


class FailingLimiter(RecordingLimiter):
    """The limiter's script failed on this request's keys."""

    async def acquire(self, ask: Ask) -> Verdict:
        raise LimiterFailed("WRONGTYPE Operation against a key holding the wrong kind of value (portico:budget:x)")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RecordingLimiter:
    return RecordingLimiter(clock)


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "ledger"


@pytest.fixture
def meter(limiter: RecordingLimiter, ledger_dir: Path) -> Iterator[Meter]:
    """A Meter that was never started: this limiter, a spool in a temporary directory, no writer thread."""
    fresh = Meter()
    fresh.limiter = limiter
    with override_settings(PORTICO_LEDGER_DIR=str(ledger_dir)):
        yield fresh


def ledger_lines(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted(directory.iterdir()) for line in path.read_bytes().splitlines()]


def new_ask(
    *, body: dict[str, Any] | None = None, max_output_tokens: int | None = None, at: float = NOW, **fields: Any
) -> MeterAsk:
    body = {"model": MODEL, "messages": HELLO, **(body or {})}
    return MeterAsk(
        request_id="req_1",
        client_request_id="client-7",
        tenant_id=TENANT,
        key_id=KEY,
        key_prefix="pk-test",
        model=MODEL,
        upstream_model=UPSTREAM_MODEL,
        provider="openai-main",
        operation="chat",
        body=body,
        streamed=bool(body.get("stream")),
        started_at=at,
        max_output_tokens=max_output_tokens,
        **fields,
    )


def ended(ask: MeterAsk, admission: Admission | None = None, *, status: int = 200, **fields: Any) -> MeterResult:
    return MeterResult(ask=ask, admission=admission, status=status, **fields)


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


def budget(amount: str, *, period: str = "monthly", period_name: str = "2026-09", spent: str = "0") -> BudgetInfo:
    return BudgetInfo(
        id=1,
        period=period,
        amount=Decimal(amount),
        soft_limit_percent=80,
        period_name=period_name,
        spent=Decimal(spent),
    )


def schedule(*prices: tuple[float, str, str]) -> PriceSchedule:
    """Prices (since, input, output per million), oldest first."""
    infos = tuple(PriceInfo(since, Decimal(i), Decimal(o), Decimal(i)) for since, i, o in prices)
    return PriceSchedule(starts=tuple(p.since for p in infos), prices=infos)


# --- who is asked what ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "billing",
    [
        snapshot(),
        snapshot(limits={("key", KEY + 1, ""): rpm(1), ("tenant", TENANT + 1, ""): rpm(1)}),
        snapshot(budgets={("tenant", TENANT + 1): budget("1")}),
        # Limited, but only on another model.
        snapshot(limits={("key", KEY, "another-model"): rpm(1)}),
    ],
    ids=["nothing", "other owners' limits", "another tenant's budget", "a limit on another model"],
)
async def test_it_asks_the_limiter_nothing_when_no_limit_or_budget_applies(
    meter: Meter, limiter: RecordingLimiter, billing: BillingSnapshot
) -> None:
    admission = await meter.admit(new_ask(), billing)

    assert admission == Admission()
    assert limiter.asks == []


KEY_ALL = Window(f"key:{KEY}", "this API key", rpm=10)
KEY_MODEL = Window(f"key:{KEY}:model:{MODEL}", f"this API key on model {MODEL}", rpm=5)
TENANT_ALL = Window(f"tenant:{TENANT}", "your organization", rpm=100)
TENANT_MODEL = Window(f"tenant:{TENANT}:model:{MODEL}", f"your organization on model {MODEL}", rpm=50)


@pytest.mark.parametrize(
    ("limits", "windows"),
    [
        ({("key", KEY, ""): rpm(10)}, (KEY_ALL,)),
        ({("tenant", TENANT, ""): rpm(100)}, (TENANT_ALL,)),
        ({("key", KEY, MODEL): rpm(5), ("key", KEY, ""): rpm(10)}, (KEY_MODEL, KEY_ALL)),
        ({("tenant", TENANT, MODEL): rpm(50), ("key", KEY, ""): rpm(10)}, (KEY_ALL, TENANT_MODEL)),
        (
            {
                ("tenant", TENANT, ""): rpm(100),
                ("tenant", TENANT, MODEL): rpm(50),
                ("key", KEY, ""): rpm(10),
                ("key", KEY, MODEL): rpm(5),
                ("key", KEY, "another-model"): rpm(1),
                ("key", KEY + 1, ""): rpm(1),
            },
            (KEY_MODEL, KEY_ALL, TENANT_MODEL, TENANT_ALL),
        ),
    ],
    ids=["key", "tenant", "key with a model override", "tenant model override and key", "everything"],
)
async def test_it_builds_one_window_per_limit_of_the_key_and_its_tenant_on_this_model(
    meter: Meter,
    limiter: RecordingLimiter,
    limits: dict[tuple[str, int, str], LimitInfo],
    windows: tuple[Window, ...],
) -> None:
    await meter.admit(new_ask(), snapshot(limits=limits))

    [ask] = limiter.asks
    assert ask.request_id == "req_1"
    assert ask.windows == windows
    assert (ask.budgets, ask.cost) == ((), 0)


async def test_a_batch_line_asks_for_the_share_of_its_limits_a_started_meter_was_set_and_a_live_call_for_all(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    limits = {("key", KEY, ""): rpm(10), ("tenant", TENANT, ""): rpm(100)}
    with override_settings(PORTICO_BATCH_LIMIT_SHARE=0.6):
        meter.start()
    started, meter.limiter = meter.limiter, limiter
    try:
        await meter.admit(new_ask(batch_id="batch_1"), snapshot(limits=limits))
        await meter.admit(new_ask(), snapshot(limits=limits))
    finally:
        meter.limiter = started
        await meter.stop()

    assert [ask.share for ask in limiter.asks] == [0.6, 1.0]


async def test_a_window_carries_all_three_limits(meter: Meter, limiter: RecordingLimiter) -> None:
    limits = {("key", KEY, ""): LimitInfo(requests_per_minute=60, tokens_per_minute=90_000, max_concurrent=4)}

    await meter.admit(new_ask(), snapshot(limits=limits))

    [ask] = limiter.asks
    assert ask.windows == (Window(f"key:{KEY}", "this API key", rpm=60, tpm=90_000, concurrency=4),)


@pytest.mark.parametrize(
    ("body", "max_output_tokens", "output"),
    [
        ({"max_tokens": 100}, None, 100),
        ({"max_completion_tokens": 70, "max_tokens": 100}, None, 70),
        ({"max_tokens": 100, "n": 3}, None, 300),
        ({}, 256, 256),  # the model's own cap when the client names none
        ({}, None, 0),
    ],
)
async def test_it_reserves_the_prompt_estimate_plus_the_output_cap_against_a_tpm(
    meter: Meter, limiter: RecordingLimiter, body: dict[str, Any], max_output_tokens: int | None, output: int
) -> None:
    ask = new_ask(body=body, max_output_tokens=max_output_tokens)
    limits = {("key", KEY, ""): LimitInfo(requests_per_minute=None, tokens_per_minute=1_000_000, max_concurrent=None)}

    admission = await meter.admit(ask, snapshot(limits=limits))

    assert limiter.asks[0].tokens == prompt_tokens(dict(ask.body)) + output
    assert admission.prompt_tokens == prompt_tokens(dict(ask.body))


async def test_it_counts_no_tokens_when_neither_a_tpm_nor_a_budget_needs_them(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    admission = await meter.admit(new_ask(body={"max_tokens": 100}), snapshot(limits={("key", KEY, ""): rpm(10)}))

    assert limiter.asks[0].tokens == 0
    assert admission.prompt_tokens is None


async def test_a_prompt_already_counted_is_not_counted_again(meter: Meter, limiter: RecordingLimiter) -> None:
    limits = {("key", KEY, ""): LimitInfo(requests_per_minute=None, tokens_per_minute=1_000_000, max_concurrent=None)}

    admission = await meter.admit(new_ask(body={"max_tokens": 10}, prompt_tokens=1234), snapshot(limits=limits))

    assert (limiter.asks[0].tokens, admission.prompt_tokens) == (1244, 1234)


# --- budgets and what they reserve ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("budgets", "expected"),
    [
        (
            {("key", KEY): budget("12.5", spent="1.25")},
            LimiterBudget(
                f"key:{KEY}", "this API key", "2026-09", 12_500_000_000, 1_250_000_000,
                int(SEPTEMBER_ENDS - MINUTE) + 86_400, SEPTEMBER_ENDS,
            ),
        ),
        (
            # Loaded last month: that spend is not this period's.
            {("key", KEY): budget("12.5", period_name="2026-08", spent="9")},
            LimiterBudget(
                f"key:{KEY}", "this API key", "2026-09", 12_500_000_000, 0,
                int(SEPTEMBER_ENDS - MINUTE) + 86_400, SEPTEMBER_ENDS,
            ),
        ),
        (
            {("tenant", TENANT): budget("3", period="daily", period_name="2026-09-21", spent="0.000000001")},
            LimiterBudget(
                f"tenant:{TENANT}", "your organization", "2026-09-21", 3 * NANO, 1,
                int(DAY_ENDS - MINUTE) + 86_400, DAY_ENDS,
            ),
        ),
        (
            {("tenant", TENANT): budget("100", period="none", period_name="all", spent="99.5")},
            LimiterBudget(f"tenant:{TENANT}", "your organization", "all", 100 * NANO, 99_500_000_000, 0, 0.0),
        ),
    ],
    ids=["monthly key budget", "spend of a past period", "daily tenant budget", "lifetime budget"],
)  # fmt: skip
async def test_it_seeds_each_budget_with_the_spend_the_snapshot_knows_for_this_period(
    meter: Meter,
    limiter: RecordingLimiter,
    budgets: dict[tuple[str, int], BudgetInfo],
    expected: LimiterBudget,
) -> None:
    await meter.admit(new_ask(), snapshot(budgets=budgets))

    [ask] = limiter.asks
    assert ask.budgets == (expected,)
    assert ask.windows == ()


async def test_a_key_and_its_tenant_budget_are_both_checked(meter: Meter, limiter: RecordingLimiter) -> None:
    budgets = {("key", KEY): budget("1"), ("tenant", TENANT): budget("10")}

    await meter.admit(new_ask(), snapshot(budgets=budgets))

    assert [item.scope for item in limiter.asks[0].budgets] == [f"key:{KEY}", f"tenant:{TENANT}"]


async def test_it_reserves_the_worst_case_cost_at_the_price_in_effect_when_the_request_arrived(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    ask = new_ask(body={"max_tokens": 1000})
    prices = {MODEL: schedule((NOW - 3600, "2.5", "10"), (NOW + 1, "100", "100"))}

    await meter.admit(ask, snapshot(budgets={("key", KEY): budget("5")}, prices=prices))

    # $2.50 and $10 per million tokens are 2,500 and 10,000 nano-dollars a token.
    expected = prompt_tokens(dict(ask.body)) * 2_500 + 1000 * 10_000
    assert limiter.asks[0].cost == expected
    assert limiter.asks[0].tokens == prompt_tokens(dict(ask.body)) + 1000


async def test_a_budget_assumes_some_output_for_a_request_with_no_cap_anywhere(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    ask = new_ask(body={"n": 2})  # no max_tokens, and the model declares no max output tokens
    prices = {MODEL: schedule((NOW - 3600, "0", "10"))}

    await meter.admit(ask, snapshot(budgets={("key", KEY): budget("5")}, prices=prices))

    # Reserving no output at all would let concurrent uncapped requests overspend by all their answers.
    assert limiter.asks[0].cost == 2 * UNCAPPED_OUTPUT_RESERVE * 10_000
    assert limiter.asks[0].tokens == prompt_tokens(dict(ask.body))  # the TPM is settled with the real count instead


@pytest.mark.parametrize(
    ("prices", "cost"),
    [
        ({}, 0),  # an unpriced model costs nothing
        ({MODEL: schedule((NOW + 60, "1", "1"))}, 0),  # nor does one priced only from later on
        ({MODEL: schedule((NOW - 60, "0.000001", "0"))}, 1),  # a fraction of a nano-dollar is reserved as one
    ],
)
async def test_the_reserved_cost_is_rounded_up_to_whole_nano_dollars(
    meter: Meter, limiter: RecordingLimiter, prices: dict[str, PriceSchedule], cost: int
) -> None:
    await meter.admit(new_ask(), snapshot(budgets={("key", KEY): budget("5")}, prices=prices))

    assert limiter.asks[0].cost == cost


async def test_windows_are_derived_once_per_snapshot_and_again_for_a_new_one(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    first = snapshot(limits={("key", KEY, ""): rpm(10)})
    await meter.admit(new_ask(), first)
    await meter.admit(new_ask(), first)
    assert limiter.asks[0].windows is limiter.asks[1].windows  # the same derived tuple, not rebuilt

    # A new snapshot (the operator changed the limit) is derived anew: nothing stale is carried over.
    await meter.admit(new_ask(), snapshot(limits={("key", KEY, ""): rpm(20)}))
    assert [window.rpm for window in limiter.asks[2].windows] == [20]


async def test_what_is_derived_per_snapshot_stays_bounded(
    meter: Meter, limiter: RecordingLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering, "_DERIVED_MAX", 3)
    billing = snapshot(limits={("key", KEY, ""): rpm(10)})
    for model in ("a", "b", "c", "d", "e"):
        ask = new_ask()
        ask.model = model
        await meter.admit(ask, billing)

    assert len(billing.derived) <= 3
    assert len(limiter.asks) == 5


async def test_a_budget_beyond_what_a_counter_holds_is_clamped(meter: Meter, limiter: RecordingLimiter) -> None:
    # The largest amount the admin takes, $10 billion, is 1e19 nano-USD: past a signed 64-bit integer.
    await meter.admit(new_ask(), snapshot(budgets={("key", KEY): budget("9999999999.9999")}))

    [item] = limiter.asks[0].budgets
    assert item.limit == COUNTER_MAX


# --- what the limiter answers --------------------------------------------------------------------


async def test_an_admitted_request_gets_the_rate_limit_headers_and_a_ticket(meter: Meter) -> None:
    limits = {("key", KEY, ""): LimitInfo(requests_per_minute=10, tokens_per_minute=6000, max_concurrent=None)}

    admission = await meter.admit(new_ask(body={"max_tokens": 50}), snapshot(limits=limits))

    assert admission.prompt_tokens == 12
    assert admission.headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",  # one of 10 a minute comes back in 6 s
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5938",  # 12 prompt tokens and 50 of output reserved
        "x-ratelimit-reset-tokens": "620ms",  # 62 of 6000 a minute come back in 0.62 s
    }
    assert admission.refused is None
    assert admission.ticket is not None
    assert admission.ticket.request_id == "req_1"


async def test_the_request_after_the_rpm_is_refused_with_how_long_to_wait(meter: Meter, clock: FakeClock) -> None:
    billing = snapshot(limits={("key", KEY, ""): rpm(2)})
    await meter.admit(new_ask(), billing)
    clock.now += 0.5
    await meter.admit(new_ask(at=clock.now), billing)

    admission = await meter.admit(new_ask(at=clock.now), billing)

    assert (admission.refused, admission.ticket, admission.retry_after) == ("requests", None, 29.5)
    assert admission.message == (
        "Rate limit reached for requests per minute (RPM) on this API key: Limit 2, Used 2, Requested 1. "
        "Please try again in 29.5s."
    )
    assert admission.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "59.5s",
    }


@pytest.mark.parametrize(
    ("limit", "refused"),
    [
        (LimitInfo(requests_per_minute=None, tokens_per_minute=10, max_concurrent=None), "tokens"),
        (LimitInfo(requests_per_minute=None, tokens_per_minute=None, max_concurrent=0), "concurrency"),
        (LimitInfo(requests_per_minute=0, tokens_per_minute=None, max_concurrent=None), "requests"),
    ],
    ids=["more tokens than the tpm", "no concurrency at all", "an rpm of zero"],
)
async def test_it_says_which_limit_refused_the_request(meter: Meter, limit: LimitInfo, refused: str) -> None:
    admission = await meter.admit(new_ask(body={"max_tokens": 100}), snapshot(limits={("key", KEY, ""): limit}))

    assert admission.refused == refused
    assert admission.ticket is None


async def test_a_spent_budget_is_refused_until_the_period_ends(meter: Meter) -> None:
    billing = snapshot(budgets={("tenant", TENANT): budget("2", spent="2")})

    admission = await meter.admit(new_ask(), billing)

    assert admission.refused == "budget"
    assert admission.message == (
        "You exceeded your current quota, please check your plan and billing details. "
        "Budget of your organization for 2026-09: Limit $2.00, Used $2.00."
    )
    assert admission.retry_after == SEPTEMBER_ENDS - NOW


@pytest.mark.parametrize(
    ("failure", "refused"),
    [(DownLimiter, "unavailable"), (FailingLimiter, "failed")],
    ids=["unreachable and failing closed", "failed on this request"],
)
async def test_a_limiter_that_cannot_answer_refuses_without_saying_why(
    meter: Meter, clock: FakeClock, failure: type[RecordingLimiter], refused: str
) -> None:
    meter.limiter = failure(clock)

    admission = await meter.admit(new_ask(), snapshot(limits={("key", KEY, ""): rpm(10)}))

    assert admission == Admission(refused=refused)  # type: ignore[arg-type]


# --- finishing: usage, cost, settle, ledger ------------------------------------------------------


async def test_finishing_writes_the_ledger_line_and_settles_the_actual_usage(
    meter: Meter, limiter: RecordingLimiter, ledger_dir: Path
) -> None:
    ask = new_ask(body={"max_tokens": 500})
    billing = snapshot(
        limits={("key", KEY, ""): LimitInfo(None, 100_000, 2)},
        budgets={("key", KEY): budget("10")},
        prices={MODEL: schedule((NOW - 60, "2.5", "10"))},
    )
    admission = await meter.admit(ask, billing)
    usage = {
        "prompt_tokens": 40,
        "completion_tokens": 15,
        "total_tokens": 55,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 4},
    }

    cost = meter.finish(ended(ask, admission, usage=usage, latency_ms=830, first_token_ms=120), billing)
    await meter.drain()

    assert cost == Decimal("0.00025")  # (40 × 2.50 + 15 × 10) / 1M; cached tokens at the input price here
    assert limiter.settled == [(admission.ticket, 55, 250_000)]
    assert ledger_lines(ledger_dir) == [
        {
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
            "reasoning_tokens": 4,
            "tokens_estimated": False,
            "cost": "0.00025",
            "latency_ms": 830,
            "first_token_ms": 120,
            "status": 200,
            "error_type": "",
            "streamed": False,
            "client_disconnected": False,
            "deployment_id": None,
            "deployment": "",
            "attempts": 1,
            "provider_cost": "0",
            "batch_id": None,
            "queue_ms": None,
            "cache_creation_tokens": 0,
            "upstream_id": "",
            "overhead_ms": None,
        }
    ]


async def test_each_deployment_that_served_part_of_a_call_is_charged_its_own_provider_price(
    meter: Meter, ledger_dir: Path
) -> None:
    # A stream broke on a cheap deployment after 10 tokens; a dear one carried it on (prompt 30, 20 more tokens).
    cheap, dear = 41, 42
    billing = dataclasses.replace(
        snapshot(prices={MODEL: schedule((NOW - 60, "5", "20"))}),
        costs={cheap: schedule((NOW - 60, "1", "2")), dear: schedule((NOW - 60, "3", "6"))},
    )
    usage = {"prompt_tokens": 50, "completion_tokens": 30, "total_tokens": 80}
    earlier = ((cheap, Usage(prompt_tokens=20, completion_tokens=10)),)

    cost = meter.finish(
        ended(new_ask(), usage=usage, deployment_id=dear, deployment="dear/m", attempts=2, earlier=earlier), billing
    )
    await meter.drain()

    assert cost == Decimal("0.00085")  # the tenant's price for all 80 tokens: (50 × 5 + 30 × 20) / 1M
    # The cheap deployment's 20 + 10 at its price, the dear one's remaining 30 + 20 at its own.
    assert ledger_lines(ledger_dir)[0]["provider_cost"] == str(Decimal("0.00004") + Decimal("0.00021"))


async def test_the_ledger_keeps_the_exact_cost_while_the_limiter_is_charged_whole_nano_dollars(
    meter: Meter, limiter: RecordingLimiter, ledger_dir: Path
) -> None:
    ask = new_ask()
    billing = snapshot(budgets={("key", KEY): budget("1")}, prices={MODEL: schedule((NOW - 60, "0.000001", "0"))})
    admission = await meter.admit(ask, billing)

    cost = meter.finish(ended(ask, admission, usage={"prompt_tokens": 7, "completion_tokens": 0}), billing)
    await meter.drain()

    assert cost == Decimal("7E-12")
    assert Decimal(ledger_lines(ledger_dir)[0]["cost"]) == Decimal("7E-12")
    assert limiter.settled[0][2] == 1


def stream_chunk(content: str = "", *, arguments: str = "") -> bytes:
    delta: dict[str, Any] = {"content": content}
    if arguments:
        delta = {"tool_calls": [{"index": 0, "function": {"name": "lookup", "arguments": arguments}}]}
    return orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


async def test_it_counts_the_tokens_itself_when_a_stream_reported_no_usage(
    meter: Meter, limiter: RecordingLimiter, ledger_dir: Path
) -> None:
    ask = new_ask(body={"stream": True})
    billing = snapshot(limits={("key", KEY, ""): LimitInfo(None, 100_000, None)})
    admission = await meter.admit(ask, billing)
    outputs = [stream_chunk("Hello"), stream_chunk(" there, world"), stream_chunk(arguments='{"q": "x"}'), b"?"]

    # The client left before the upstream's usage event.
    meter.finish(ended(ask, admission, outputs=outputs, client_disconnected=True), billing)
    await meter.drain()

    completion = tokens.count_text('Hello there, worldlookup{"q": "x"}', model=UPSTREAM_MODEL)
    [line] = ledger_lines(ledger_dir)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt_tokens(dict(ask.body)), completion)
    assert (line["tokens_estimated"], line["streamed"], line["client_disconnected"]) == (True, True, True)
    assert limiter.settled[0][1] == prompt_tokens(dict(ask.body)) + completion


async def test_a_stream_that_failed_midway_is_charged_for_what_it_sent(meter: Meter, ledger_dir: Path) -> None:
    ask = new_ask(body={"stream": True})
    billing = snapshot(prices={MODEL: schedule((NOW - 60, "0", "1000000"))})  # $1 an output token
    result = ended(ask, status=504, error_type="upstream_timeout", outputs=[stream_chunk("partial answer")])

    cost = meter.finish(result, billing)

    completion = tokens.count_text("partial answer", model=UPSTREAM_MODEL)
    [line] = ledger_lines(ledger_dir)
    assert cost == completion
    assert (line["status"], line["error_type"], line["tokens_estimated"]) == (504, "upstream_timeout", True)
    assert line["completion_tokens"] == completion


async def test_an_answer_without_usage_is_charged_for_its_counted_prompt(meter: Meter, ledger_dir: Path) -> None:
    ask = new_ask()

    meter.finish(ended(ask), snapshot())

    [line] = ledger_lines(ledger_dir)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt_tokens(dict(ask.body)), 0)
    assert line["tokens_estimated"] is True


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(504, "upstream_timeout"), (429, "rate_limit_exceeded"), (429, "insufficient_quota")],
)
async def test_a_failed_request_uses_and_costs_nothing(
    meter: Meter, limiter: RecordingLimiter, ledger_dir: Path, status: int, error_type: str
) -> None:
    billing = snapshot(prices={MODEL: schedule((NOW - 60, "5", "5"))})

    cost = meter.finish(ended(new_ask(body={"max_tokens": 100}), status=status, error_type=error_type), billing)
    await meter.drain()

    assert cost == 0
    assert limiter.settled == []  # nothing was reserved
    [line] = ledger_lines(ledger_dir)
    assert (line["prompt_tokens"], line["completion_tokens"], line["cost"]) == (0, 0, "0")
    assert (line["status"], line["error_type"], line["tokens_estimated"]) == (status, error_type, False)


async def test_an_error_type_is_cut_to_what_the_ledger_column_holds(meter: Meter, ledger_dir: Path) -> None:
    meter.finish(ended(new_ask(), status=502, error_type="x" * 100), snapshot())

    assert ledger_lines(ledger_dir)[0]["error_type"] == "x" * 60


async def test_an_admitted_request_that_failed_gives_back_all_it_reserved(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    ask = new_ask(body={"max_tokens": 100})
    billing = snapshot(budgets={("key", KEY): budget("5")}, prices={MODEL: schedule((NOW - 60, "5", "5"))})
    admission = await meter.admit(ask, billing)

    meter.finish(ended(ask, admission, status=504, error_type="upstream_timeout"), billing)
    await meter.drain()

    assert limiter.settled == [(admission.ticket, 0, 0)]


async def test_finishing_frees_the_concurrency_slot(meter: Meter) -> None:
    billing = snapshot(limits={("key", KEY, ""): LimitInfo(None, None, 1)})
    first = new_ask()
    admission = await meter.admit(first, billing)
    assert (await meter.admit(new_ask(), billing)).refused == "concurrency"

    meter.finish(ended(first, admission), billing)
    await meter.drain()

    assert (await meter.admit(new_ask(), billing)).refused is None


async def test_the_tokens_a_request_did_not_use_come_back_to_the_tpm(meter: Meter) -> None:
    billing = snapshot(limits={("key", KEY, ""): LimitInfo(None, 1000, None)})
    first = new_ask(body={"max_tokens": 900})
    admission = await meter.admit(first, billing)
    assert (await meter.admit(new_ask(body={"max_tokens": 900}), billing)).refused == "tokens"

    meter.finish(ended(first, admission, usage={"prompt_tokens": 10, "completion_tokens": 10}), billing)
    await meter.drain()

    second = await meter.admit(new_ask(body={"max_tokens": 900}), billing)
    # Only the 20 tokens used stay taken, beside the new reservation.
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 20 - (prompt_tokens(dict(first.body)) + 900))


async def test_a_request_with_no_limits_is_recorded_without_settling(
    meter: Meter, limiter: RecordingLimiter, ledger_dir: Path
) -> None:
    ask = new_ask()
    admission = await meter.admit(ask, snapshot())

    meter.finish(ended(ask, admission, usage={"prompt_tokens": 3, "completion_tokens": 2}), snapshot())
    await meter.drain()

    assert limiter.settled == []
    assert [line["request_id"] for line in ledger_lines(ledger_dir)] == ["req_1"]


async def test_with_the_ledger_off_nothing_is_spooled_but_limits_are_still_settled(
    meter: Meter, limiter: RecordingLimiter
) -> None:
    meter.ledger_on = False
    ask = new_ask()
    billing = snapshot(limits={("key", KEY, ""): rpm(10)})
    admission = await meter.admit(ask, billing)

    meter.finish(ended(ask, admission, usage={"prompt_tokens": 3, "completion_tokens": 2}), billing)
    await meter.drain()

    assert (meter.spool.pending, meter.spool.held) == (0, [])
    assert limiter.settled == [(admission.ticket, 5, 0)]
