"""What a limiter is asked, what it answers, and how a check's raw numbers become that answer.

Both limiters (`RedisLimiter`, `LocalLimiter`) run the same checks and report
them as the same flat list of integers (a "reply", which a Lua script can
return cheaply); `verdict_from_reply` turns a reply into a `Verdict`, so the
messages and headers are written once.

A reply is `[ok, now_ms]` followed, in the order of `Ask.windows` and for each
limit the window has:

    rpm, tpm      wait_ms, remaining, reset_ms   wait_ms: 0 = passes, -1 = can never pass
    concurrency   in_flight                      requests holding a slot before this one

and then, for each budget in `Ask.budgets`, its counter (spent + reserved,
nano-USD) before this request. `remaining` and `reset_ms` describe the bucket
after this request's reservation when the request is admitted, before it
otherwise (OpenAI's headers count the request they come with).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple, Protocol

from django.conf import settings

from billing.money import from_nano, usd

Refusal = Literal["requests", "tokens", "concurrency", "budget"]

MINUTE_MS = 60_000.0
# Absolute times in milliseconds are ~1.7e12, where a double is exact to ~0.0002 ms:
# a bucket filled by limit × (60000 / limit) must not be refused for rounding dust.
SLACK_MS = 0.01
# A full concurrency cap frees up when some request ends, which no clock predicts; suggest a short wait.
CONCURRENCY_RETRY = 1.0
NEVER = -1
# The most one request may reserve or settle, in tokens or nano-USD: far beyond any real request ($281,475),
# exact in the doubles Lua computes with (<= 2**53), and so far inside a signed 64-bit integer that Redis's
# INCRBY cannot overflow however many are added to one counter.
RESERVATION_MAX = 2**48
# A budget's limit and seed (nano-USD) are clamped here: $4.6 billion is as good as no limit.
COUNTER_MAX = 2**62
# How far a token bucket may run into debt (ms, about 35 years): its expiry must stay a plain integer.
DEBT_MAX_MS = 2.0**40

_RATE_NAMES = {"requests": "requests per minute (RPM)", "tokens": "tokens per minute (TPM)"}
_QUOTA = "You exceeded your current quota, please check your plan and billing details."


class LimiterUnavailable(Exception):
    """The shared limiter cannot be reached and is configured to fail closed."""


class LimiterFailed(Exception):
    """The limiter refused to check this one request (a script error): a bug in that request, not an outage."""


@dataclass(frozen=True, slots=True)
class Window:
    """One rate-limited scope: a key, a tenant, a key on one model."""

    scope: str  # unique id, e.g. "key:12", "tenant:3", "key:12:model:gpt-4o"
    label: str  # for messages: "this API key", "this organization", "this API key on model gpt-4o"
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending cap of one scope for one period, in nano-USD (1e-9 USD)."""

    scope: str  # "tenant:3", "key:12"
    label: str
    period: str  # the current period's name: "2026-11", "2026-11-26", "all"
    limit: int
    spent: int  # spend the ledger knew when the snapshot was built; the shared counter never goes below it
    ttl: int  # seconds the period's counter lives (period length + margin); 0 = forever
    ends_at: float = 0.0  # Unix time the period ends, for Retry-After; 0 = never


# Built for every limited call: plain slots classes, whose constructors cost half a frozen one's (a frozen
# dataclass sets each field through object.__setattr__). Nothing changes them once built.
@dataclass(slots=True)
class Ask:
    request_id: str
    windows: tuple[Window, ...]
    budgets: tuple[Budget, ...]
    tokens: int  # reserved for TPM: estimated prompt tokens + the requested output cap
    cost: int  # reserved for budgets: the worst-case cost in nano-USD
    # On a Redis Cluster, the hash tag that keeps every key of this call in one slot (keys.py); "" = derived.
    shard: str = ""
    # The part of each limit the call may fill (`ceiling`): below 1 for a batch line (PORTICO_BATCH_LIMIT_SHARE,
    # set by billing.metering), so that interactive calls keep room; what it takes counts at the whole limit's rate.
    share: float = 1.0


# Held weakly while its slots in flight are renewed (billing.limits.leases); plain slots, as Ask.
@dataclass(slots=True, weakref_slot=True)
class Ticket:
    """What an admitted request reserved, to be settled once it has finished."""

    request_id: str
    tokens: int
    cost: int
    token_limits: tuple[tuple[str, int], ...]  # (scope, tpm) of every window whose TPM was reserved
    concurrency_scopes: tuple[str, ...]
    budget_periods: tuple[tuple[str, str], ...]  # (scope, period)
    local: bool = False  # issued by the in-process limiter: settled there too
    shard: str = ""  # the acquire's hash tag: its settle and renewals must find the same keys

    @property
    def empty(self) -> bool:
        return not (self.token_limits or self.concurrency_scopes or self.budget_periods)


@dataclass(slots=True)
class Verdict:
    allowed: bool
    refused: Refusal | None
    message: str  # OpenAI-style, naming the limit
    retry_after: float  # seconds; 0 when allowed, and for refusals that waiting cannot cure
    headers: dict[str, str]  # x-ratelimit-{limit,remaining,reset}-{requests,tokens}
    ticket: Ticket | None  # None when refused: nothing was reserved


def in_flight_lease(lease: float | None) -> float:
    """Seconds a slot in flight outlives its last renewal: `lease`, else PORTICO_IN_FLIGHT_LEASE."""
    return settings.PORTICO_IN_FLIGHT_LEASE if lease is None else lease


class Limiter(Protocol):
    async def acquire(self, ask: Ask) -> Verdict: ...

    async def settle(self, ticket: Ticket, *, tokens: int, cost: int) -> None: ...

    def settle_soon(self, ticket: Ticket, *, tokens: int, cost: int) -> Awaitable[Any]:
        """`settle` begun at once; what it returns completes when the settle is done. Redis trouble is dealt with
        by the limiter and needs nothing of the caller (an awaited future may still carry it: ignore it)."""
        ...

    async def aclose(self) -> None: ...


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's rate-limit headers write it: "17ms", "2.5s", "6m0s", "1h2m3s".

    Rounded up to the millisecond, so a client that waits this long is never early.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms // 1000}.{ms % 1000:03d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def clamp(amount: int, most: int = RESERVATION_MAX) -> int:
    return min(max(amount, 0), most)


def ceiling(limit: int, share: float, *, amount: int = 1) -> int:
    """How full a window of `limit` may be after admitting a call that may fill `share` of it and takes `amount`.

    Never more than the limit; never less than the call's own amount (a line as large as most of a TPM limit still
    passes, once the window is that empty), nor than 1 (a limit of 1 still admits the call when nothing else holds
    it). The rounding is down, and the tiny epsilon keeps 0.29 × 100 at 29 rather than 28.
    """
    if share >= 1 or limit <= 0:
        return limit
    return min(limit, max(amount, 1, math.floor(limit * share + 1e-9)))


def bounded(ask: Ask) -> Ask:
    """`ask` with its reservation clamped to what both limiters can count exactly."""
    if 0 <= ask.tokens <= RESERVATION_MAX and 0 <= ask.cost <= RESERVATION_MAX:
        return ask
    return replace(ask, tokens=clamp(ask.tokens), cost=clamp(ask.cost))


def nothing_to_check(ask: Ask) -> bool:
    return not ask.budgets and all(
        window.rpm is None and window.tpm is None and window.concurrency is None for window in ask.windows
    )


def ticket_for(ask: Ask, *, local: bool) -> Ticket:
    return _ticket(ask, _parts_of(ask.windows, ask.budgets), local=local)


def _ticket(ask: Ask, parts: _Parts, *, local: bool) -> Ticket:
    return Ticket(
        request_id=ask.request_id,
        tokens=ask.tokens,
        cost=ask.cost,
        token_limits=parts.token_limits,
        concurrency_scopes=parts.concurrency_scopes,
        budget_periods=parts.budget_periods,
        local=local,
        shard=ask.shard,
    )


Rate = tuple[int, int]  # the kind's place in _KINDS (and _HEADER_NAMES), the window's limit of it


class _Parts(NamedTuple):
    """What a call's windows and budgets say that its reply's reading and its ticket need, worked out once."""

    windows: tuple[Window, ...]  # held, with the budgets, so that no other tuple can take their ids while kept
    budgets: tuple[Budget, ...]
    token_limits: tuple[tuple[str, int], ...]
    concurrency_scopes: tuple[str, ...]
    budget_periods: tuple[tuple[str, str], ...]
    rates: tuple[tuple[Window, tuple[Rate, ...]], ...]  # each window's, in the order an acquire's reply gives them


# By the identity of a call's windows and budgets: the metering hands over the same tuples call after call.
_PARTS: dict[tuple[int, int], _Parts] = {}
_PARTS_MAX = 4096  # the oldest given up first, as the limiter's packed shapes are


def _parts_of(windows: tuple[Window, ...], budgets: tuple[Budget, ...]) -> _Parts:
    found = _PARTS.get((id(windows), id(budgets)))
    if found is None:
        found = _Parts(
            windows,
            budgets,
            tuple((window.scope, window.tpm) for window in windows if window.tpm is not None),
            tuple(window.scope for window in windows if window.concurrency is not None),
            tuple((budget.scope, budget.period) for budget in budgets),
            tuple((window, _window_rates(window)) for window in windows),
        )
        if len(_PARTS) >= _PARTS_MAX:
            del _PARTS[next(iter(_PARTS))]
        _PARTS[(id(windows), id(budgets))] = found
    return found


def _window_rates(window: Window) -> tuple[Rate, ...]:
    rates: list[Rate] = []
    if window.rpm is not None:
        rates.append((0, window.rpm))
    if window.tpm is not None:
        rates.append((1, window.tpm))
    return tuple(rates)


def unlimited_verdict(ask: Ask, *, local: bool) -> Verdict:
    return Verdict(True, None, "", 0.0, {}, ticket_for(ask, local=local))


# The kinds of rate, and per kind the names of the headers that describe its tightest window.
_KINDS: tuple[Refusal, Refusal] = ("requests", "tokens")
_HEADER_NAMES = (
    ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
)


def verdict_from_reply(ask: Ask, reply: Sequence[int], *, local: bool) -> Verdict:
    # (rank, retry_after, kind, message): budgets first (waiting a minute cannot cure them), then
    # requests that can never pass, then the rate limit that takes longest to clear.
    refusals: list[tuple[int, float, Refusal, str]] = []
    # Per kind, (limit, remaining, reset_ms) of the window with the fewest requests or tokens left; of two with as
    # few left, the one that takes longer to refill.
    tightest: list[tuple[int, int, int] | None] = [None, None]
    parts = _parts_of(ask.windows, ask.budgets)
    at = 2
    for window, rates in parts.rates:
        for slot, limit in rates:
            wait_ms, remaining, reset_ms = reply[at], reply[at + 1], reply[at + 2]
            at += 3
            shown = tightest[slot]
            if shown is None or remaining < shown[1] or (remaining == shown[1] and reset_ms > shown[2]):
                tightest[slot] = (limit, remaining, reset_ms)
            if wait_ms:
                amount = ask.tokens if slot else 1
                refusals.append(_rate_refusal(_KINDS[slot], window.label, limit, amount, wait_ms, remaining))
        if window.concurrency is not None:
            in_flight = reply[at]
            at += 1
            cap = ceiling(window.concurrency, ask.share)
            if in_flight >= cap:
                message = (
                    f"Too many concurrent requests on {window.label}: Limit {cap}, "
                    f"In flight {in_flight}. Please try again in {format_reset(CONCURRENCY_RETRY)}."
                )
                refusals.append((2, CONCURRENCY_RETRY, "concurrency", message))
    now = reply[1] / 1000
    for budget in ask.budgets:
        current = reply[at]
        at += 1
        if current >= budget.limit:
            retry_after = max(0.0, budget.ends_at - now) if budget.ends_at else 0.0
            refusals.append((0, retry_after, "budget", _quota(budget, current)))

    headers: dict[str, str] = {}
    for (limit_name, remaining_name, reset_name), shown in zip(_HEADER_NAMES, tightest, strict=True):
        if shown is not None:
            limit, remaining, reset_ms = shown
            headers[limit_name] = str(limit)
            headers[remaining_name] = str(max(0, remaining))
            headers[reset_name] = _reset_text(reset_ms)
    if reply[0]:
        return Verdict(True, None, "", 0.0, headers, _ticket(ask, parts, local=local))
    if not refusals:
        raise ValueError(f"a refusal without a failed check: {list(reply)!r}")
    _, retry_after, kind, message = min(refusals, key=lambda refusal: (refusal[0], -refusal[1]))
    return Verdict(False, kind, message, retry_after, headers, None)


# A reset header's text by its milliseconds: a window's reset takes few distinct values from one call to the next
# (a full bucket's is always the same). Emptied when full, so it cannot grow without end.
_RESET_TEXTS: dict[int, str] = {}
_RESET_TEXTS_MAX = 4096


def _reset_text(reset_ms: int) -> str:
    text = _RESET_TEXTS.get(reset_ms)
    if text is None:
        if len(_RESET_TEXTS) >= _RESET_TEXTS_MAX:
            _RESET_TEXTS.clear()
        text = _RESET_TEXTS[reset_ms] = format_reset(reset_ms / 1000)
    return text


def _rate_refusal(
    kind: Refusal, label: str, limit: int, amount: int, wait_ms: int, remaining: int
) -> tuple[int, float, Refusal, str]:
    name = _RATE_NAMES[kind]
    if wait_ms == NEVER:
        if kind == "tokens" and limit > 0:
            cure = "The input or output tokens must be reduced in order to run successfully."
            return 1, 0.0, kind, f"Request too large for {name} on {label}: Limit {limit}, Requested {amount}. {cure}"
        return 1, 0.0, kind, f"Rate limit reached for {name} on {label}: Limit 0, Requested {amount}."
    retry_after = wait_ms / 1000
    message = (
        f"Rate limit reached for {name} on {label}: Limit {limit}, Used {limit - remaining}, "
        f"Requested {amount}. Please try again in {format_reset(retry_after)}."
    )
    return 2, retry_after, kind, message


def _quota(budget: Budget, current: int) -> str:
    period = "" if budget.period == "all" else f" for {budget.period}"
    limit, used = usd(from_nano(budget.limit), cents=True), usd(from_nano(current), cents=True)
    return f"{_QUOTA} Budget of {budget.label}{period}: Limit ${limit}, Used ${used}."
