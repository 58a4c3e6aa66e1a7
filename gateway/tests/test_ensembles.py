"""Ensembles as orchestration: fake attempts with scripted answers and delays, no upstream, no database.

Delays are a few tens of milliseconds; each test asserts that no task outlives the
ensemble it ran.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from gateway.ensembles import (
    CANCELLED,
    VOTES_MAX_CHARS,
    FirstByteTimes,
    Outcome,
    answer_check,
    cascade,
    escalation,
    hedge,
    hedge_stream,
    vote,
)
from providers.facade import ProviderInfo, RouteInfo

SLOW = 0.3  # longer than any test waits for an answer it does not take


def route(route_id: int) -> RouteInfo:
    provider = ProviderInfo(
        id=route_id,
        name=f"provider-{route_id}",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        credential="sk-test",
        connect_timeout=1.0,
        read_timeout=1.0,
        total_timeout=1.0,
        extra_headers={},
        version=0.0,
    )
    return RouteInfo(
        id=route_id,
        public_id="gpt-4o",
        provider=provider,
        upstream_model=f"model-{route_id}",
        owned_by="portico",
        created=0,
        context_window=None,
        max_output_tokens=None,
        capabilities=frozenset({"chat"}),
    )


ROUTES = tuple(route(route_id) for route_id in (1, 2, 3))


def answer(content: str | None = "Paris", *, finish_reason: str = "stop", **message: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                         "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    )  # fmt: skip


@dataclass
class Script:
    body: bytes = field(default_factory=answer)
    status: int = 200
    delay: float = 0.0
    raises: Exception | None = None


class Upstream:
    """A fake `attempt`: each deployment answers as scripted, and every call is logged."""

    def __init__(self, **scripts: Script) -> None:
        self.scripts = {int(name.removeprefix("d")): script for name, script in scripts.items()}
        self.started: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self, route: RouteInfo) -> Outcome:
        script = self.scripts[route.id]
        self.started.append(route.id)
        try:
            await asyncio.sleep(script.delay)
        except asyncio.CancelledError:
            self.cancelled.append(route.id)
            raise
        if script.raises is not None:
            raise script.raises
        return Outcome(route, script.status, script.body, usage={"total_tokens": 6}, latency=script.delay)


class UpstreamFailed(Exception):
    status = 503


@pytest.fixture(autouse=True)
async def no_task_left() -> Any:
    yield
    assert asyncio.all_tasks() == {asyncio.current_task()}


def hedged_after_ms(header: str) -> float:
    found = re.search(r"second started after (\d+) ms", header)
    assert found, header
    return float(found.group(1))


# -- cascade


async def test_it_takes_the_first_acceptable_answer_without_asking_the_next() -> None:
    upstream = Upstream(d1=Script(), d2=Script())

    result = await cascade(ROUTES[:2], upstream, {})

    assert upstream.started == [1]
    assert result.chosen.route.id == 1
    assert result.outcomes == (result.chosen,)
    assert result.headers == {"x-portico-ensemble": "cascade; answered at step 1"}


ESCALATIONS = {
    "empty": Script(body=answer("   ")),
    "length": Script(body=answer("Par", finish_reason="length")),
    "content_filter": Script(body=answer("", finish_reason="content_filter")),
    "refusal": Script(body=answer(None, refusal="I can't help with that.")),
    "refusal phrase": Script(body=answer("I\u2019m sorry, but I can\u2019t  help with that request.")),
    "error": Script(status=500, body=b'{"error": {"message": "boom"}}'),
    "exception": Script(raises=UpstreamFailed("refused")),
    "unreadable": Script(body=b"<html>502</html>"),
}


@pytest.mark.parametrize("case", ESCALATIONS)
async def test_it_escalates_a_bad_first_answer_to_the_next_deployment(case: str) -> None:
    upstream = Upstream(d1=ESCALATIONS[case], d2=Script(body=answer("Paris")), d3=Script())

    result = await cascade(ROUTES, upstream, {})

    assert upstream.started == [1, 2]
    assert result.chosen.route.id == 2
    assert [outcome.route.id for outcome in result.outcomes] == [1, 2]
    expected = {"refusal phrase": "refusal", "error": "error-500", "exception": "error-503"}.get(case, case)
    assert result.headers["x-portico-ensemble"] == f"cascade; answered at step 2; escalated: {expected}"


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["city", "population"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize(
    ("response_format", "content"),
    [
        (SCHEMA, '{"city": "Paris"}'),
        (SCHEMA, '{"city": "Paris", "population": "many"}'),
        (SCHEMA, "Paris has 2 million people"),
        ({"type": "json_object"}, "[1, 2]"),
        ({"type": "json_object"}, "not json"),
    ],
)
async def test_it_escalates_an_answer_that_does_not_match_the_response_format(
    response_format: dict[str, Any], content: str
) -> None:
    good = '{"city": "Paris", "population": 2100000}'
    upstream = Upstream(d1=Script(body=answer(content)), d2=Script(body=answer(good)))

    result = await cascade(ROUTES[:2], upstream, {"response_format": response_format})

    assert result.chosen.route.id == 2
    assert result.headers["x-portico-ensemble"].endswith("escalated: response_format")


def test_it_accepts_what_the_response_format_asks_for_and_long_apologies() -> None:
    matches = Outcome(ROUTES[0], 200, answer('{"city": "Paris", "population": 2100000}'))
    apology = Outcome(ROUTES[0], 200, answer("I'm sorry, but I can't be sure; " + "here is what I know. " * 20))
    tool_call = Outcome(ROUTES[0], 200, answer(None, tool_calls=[{"id": "call_1", "type": "function"}]))

    assert escalation(matches, answer_check({"response_format": SCHEMA})) == ""
    assert escalation(apology) == ""
    assert escalation(tool_call) == ""


def test_it_does_not_run_schema_patterns_nor_hold_answers_to_a_broken_schema() -> None:
    patterned = {"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "^(a+)+$"}}}
    broken = {"type": "json_schema", "json_schema": {"schema": {"type": "no-such-type"}}}

    check = answer_check({"response_format": patterned})
    assert check is not None
    assert check('"' + "a" * 40 + '!"') is True  # would backtrack for minutes if the pattern ran
    assert answer_check({"response_format": broken}) is None


async def test_it_answers_with_the_last_answer_when_none_is_acceptable() -> None:
    upstream = Upstream(
        d1=Script(body=answer("")),
        d2=Script(body=answer("Par", finish_reason="length")),
        d3=Script(status=500, body=b"{}"),
    )

    result = await cascade(ROUTES, upstream, {})

    assert result.chosen.route.id == 2
    assert len(result.outcomes) == 3
    assert result.headers["x-portico-ensemble"] == (
        "cascade; answered at step 2; escalated: empty length error-500; none acceptable"
    )


async def test_it_answers_with_the_last_failure_when_every_deployment_failed() -> None:
    upstream = Upstream(d1=Script(status=500, body=b"{}"), d2=Script(raises=UpstreamFailed("down")))

    result = await cascade(ROUTES[:2], upstream, {})

    assert result.chosen.route.id == 2
    assert result.chosen.status == 503
    assert isinstance(result.chosen.error, UpstreamFailed)


# -- hedge


def times_with_p95(route_id: int, seconds: float) -> FirstByteTimes:
    times = FirstByteTimes(min_samples=4)
    for _ in range(10):
        times.observe(route_id, seconds)
    return times


async def test_it_does_not_hedge_a_first_deployment_that_answers_in_time() -> None:
    upstream = Upstream(d1=Script(delay=0.01), d2=Script())

    result = await hedge(ROUTES[:2], upstream, times_with_p95(1, 0.1), first_byte_timeout_default=5.0)

    assert upstream.started == [1]
    assert result.chosen.route.id == 1
    assert result.headers == {"x-portico-ensemble": "hedge; not hedged"}


async def test_it_asks_the_second_after_the_first_p95_and_cancels_the_slow_first() -> None:
    upstream = Upstream(d1=Script(delay=SLOW), d2=Script(delay=0.01))
    times = times_with_p95(1, 0.05)

    result = await hedge(ROUTES[:2], upstream, times, first_byte_timeout_default=5.0)

    assert result.chosen.route.id == 2
    assert upstream.cancelled == [1]
    first = next(outcome for outcome in result.outcomes if outcome.route.id == 1)
    assert (first.status, first.cancelled, first.usage) == (CANCELLED, True, None)
    assert 45 <= hedged_after_ms(result.headers["x-portico-ensemble"]) < 150
    assert result.headers["x-portico-ensemble"].endswith("second won")
    times.record(first)  # the cancelled wait counts, as a lower bound
    assert times.p95(1) == pytest.approx(first.latency)


async def test_it_keeps_the_first_when_it_answers_before_the_hedged_second() -> None:
    upstream = Upstream(d1=Script(delay=0.08), d2=Script(delay=SLOW))

    result = await hedge(ROUTES[:2], upstream, times_with_p95(1, 0.04), first_byte_timeout_default=5.0)

    assert result.chosen.route.id == 1
    assert upstream.cancelled == [2]
    assert [(outcome.route.id, outcome.status) for outcome in result.outcomes] == [(1, 200), (2, CANCELLED)]
    assert result.headers["x-portico-ensemble"].endswith("first won")


async def test_it_asks_the_second_at_once_when_the_first_fails_fast() -> None:
    upstream = Upstream(d1=Script(raises=UpstreamFailed("refused")), d2=Script(delay=0.01))

    result = await hedge(ROUTES[:2], upstream, FirstByteTimes(), first_byte_timeout_default=5.0)

    assert result.chosen.route.id == 2
    assert [outcome.status for outcome in result.outcomes] == [200, 503]
    assert hedged_after_ms(result.headers["x-portico-ensemble"]) < 50


async def test_it_waits_for_the_default_first_byte_timeout_before_enough_samples() -> None:
    upstream = Upstream(d1=Script(delay=SLOW), d2=Script())
    times = FirstByteTimes(min_samples=8)
    for _ in range(7):
        times.observe(1, 0.001)

    result = await hedge(ROUTES[:2], upstream, times, first_byte_timeout_default=0.06)

    assert times.p95(1) is None
    assert 55 <= hedged_after_ms(result.headers["x-portico-ensemble"]) < 150


async def test_it_reports_both_failures_and_chooses_the_second() -> None:
    upstream = Upstream(d1=Script(status=500, body=b"{}"), d2=Script(status=502, body=b"{}"))

    result = await hedge(ROUTES[:2], upstream, FirstByteTimes(), first_byte_timeout_default=5.0)

    assert result.chosen.status == 502
    assert [outcome.status for outcome in result.outcomes] == [500, 502]
    assert result.headers["x-portico-ensemble"].endswith("both failed")


def test_it_keeps_a_p95_per_deployment_and_forgets_stale_samples() -> None:
    now = [0.0]
    times = FirstByteTimes(size=100, min_samples=20, stale_after=60.0, clock=lambda: now[0])
    for millis in range(1, 101):
        times.observe(1, millis / 1000)
    times.observe(2, 9.0)

    assert times.p95(1) == pytest.approx(0.095)
    assert times.p95(2) is None
    now[0] = 61.0
    assert times.p95(1) is None
    times.record(Outcome(ROUTES[0], 500, latency=0.001))  # failures say nothing of answer times
    times.record(Outcome(ROUTES[0], 200, latency=2.0, ttfb=0.2))
    assert list(times._samples[1]) == [0.2]


# -- hedge for streams


class Stream:
    def __init__(self, route_id: int, log: list[str]) -> None:
        self.route_id = route_id
        self.log = log

    async def aclose(self) -> None:
        self.log.append(f"closed {self.route_id}")


class Opener:
    def __init__(self, delays: dict[int, float], fail: frozenset[int] = frozenset()) -> None:
        self.delays = delays
        self.fail = fail
        self.log: list[str] = []

    async def __call__(self, route: RouteInfo) -> Stream:
        try:
            await asyncio.sleep(self.delays[route.id])
        except asyncio.CancelledError:
            self.log.append(f"cancelled {route.id}")
            raise
        if route.id in self.fail:
            raise UpstreamFailed("no first event")
        return Stream(route.id, self.log)


async def test_it_relays_the_stream_whose_first_event_came_first() -> None:
    opener = Opener({1: SLOW, 2: 0.01})

    race = await hedge_stream(ROUTES[:2], opener, times_with_p95(1, 0.03), first_byte_timeout_default=5.0)

    assert race.stream is not None
    assert race.stream.route_id == 2
    assert race.route == ROUTES[1]
    assert opener.log == ["cancelled 1"]
    assert [(outcome.route.id, outcome.status) for outcome in race.outcomes] == [(1, CANCELLED)]


async def test_it_closes_a_losing_stream_that_opened_in_the_same_turn() -> None:
    log: list[str] = []
    gate = asyncio.Event()

    async def open_stream(route: RouteInfo) -> Stream:
        # The hedged second lets the first through as it opens: both are open when the race next looks.
        if route.id == 1:
            await gate.wait()
        else:
            gate.set()
        return Stream(route.id, log)

    race = await hedge_stream(ROUTES[:2], open_stream, times_with_p95(1, 0.01), first_byte_timeout_default=5.0)

    assert race.stream is not None
    assert race.stream.route_id == 1
    assert log == ["closed 2"]
    assert [(outcome.route.id, outcome.status) for outcome in race.outcomes] == [(2, CANCELLED)]


async def test_it_closes_the_stream_of_an_opener_that_finished_despite_its_cancellation() -> None:
    log: list[str] = []

    async def open_stream(route: RouteInfo) -> Stream:
        try:
            await asyncio.sleep(SLOW if route.id == 1 else 0.01)
        except asyncio.CancelledError:
            log.append(f"opened {route.id} anyway")  # an opener that shields its connect
        return Stream(route.id, log)

    race = await hedge_stream(ROUTES[:2], open_stream, times_with_p95(1, 0.01), first_byte_timeout_default=5.0)

    assert race.route == ROUTES[1]
    assert log == ["opened 1 anyway", "closed 1"]
    assert [(outcome.route.id, outcome.status) for outcome in race.outcomes] == [(1, CANCELLED)]


async def test_it_reports_every_failed_open_when_no_stream_opened() -> None:
    opener = Opener({1: 0.0, 2: 0.0}, fail=frozenset({1, 2}))

    race = await hedge_stream(ROUTES[:2], opener, FirstByteTimes(), first_byte_timeout_default=5.0)

    assert race.stream is None
    assert race.route is None
    assert [outcome.status for outcome in race.outcomes] == [503, 503]


# -- vote


async def test_it_answers_what_most_voters_say_and_shows_the_votes() -> None:
    upstream = Upstream(
        d1=Script(body=answer("Positive."), delay=0.02),
        d2=Script(body=answer("negative"), delay=0.0),
        d3=Script(body=answer("  positive "), delay=0.04),
    )

    result = await vote(ROUTES, upstream, 3, {})

    assert result.chosen.route.id == 1
    assert [outcome.route.id for outcome in result.outcomes] == [1, 2, 3]
    assert result.headers == {
        "x-portico-ensemble": "vote; 3 voters; 2 agree; 0 failed; 0 cancelled",
        "x-portico-votes": "positive=2,negative=1",
    }


async def test_it_cancels_the_rest_once_a_majority_agrees() -> None:
    upstream = Upstream(d1=Script(body=answer("yes")), d2=Script(body=answer("YES")), d3=Script(delay=SLOW))

    result = await vote(ROUTES, upstream, 3, {})

    assert upstream.cancelled == [3]
    assert [outcome.status for outcome in result.outcomes] == [200, 200, CANCELLED]
    assert result.headers["x-portico-votes"] == "yes=2"
    assert result.headers["x-portico-ensemble"].endswith("1 cancelled")


async def test_it_breaks_a_tie_by_deployment_order() -> None:
    upstream = Upstream(d1=Script(body=answer("cat"), delay=0.03), d2=Script(body=answer("dog")))

    result = await vote(ROUTES, upstream, 2, {})

    assert result.chosen.route.id == 1
    assert result.headers["x-portico-votes"] == "cat=1,dog=1"


async def test_it_counts_failures_as_no_vote_and_json_answers_by_value() -> None:
    upstream = Upstream(
        d1=Script(raises=UpstreamFailed("down")),
        d2=Script(body=answer('{"label": "spam", "score": 1}')),
        d3=Script(body=answer('{"score": 1,  "label": "spam"}')),
    )

    result = await vote(ROUTES, upstream, 3, {"response_format": {"type": "json_object"}})

    assert result.chosen.route.id == 2
    assert result.headers["x-portico-ensemble"] == "vote; 3 voters; 2 agree; 1 failed; 0 cancelled"
    assert re.fullmatch(r"#[0-9a-f]{10}=2", result.headers["x-portico-votes"])


async def test_it_answers_with_a_failure_when_no_voter_answered() -> None:
    upstream = Upstream(d1=Script(status=500, body=b"{}"), d2=Script(status=429, body=b"{}"))

    result = await vote(ROUTES, upstream, 2, {})

    assert result.chosen.status == 429
    assert result.headers["x-portico-votes"] == ""


async def test_it_keeps_the_votes_header_short_and_ascii() -> None:
    many = tuple(route(route_id) for route_id in range(1, 41))
    upstream = Upstream(**{f"d{r.id}": Script(body=answer(f"r\u00e9ponse num\u00e9ro {r.id}")) for r in many})

    result = await vote(many, upstream, 40, {})

    votes = result.headers["x-portico-votes"]
    assert len(votes) <= VOTES_MAX_CHARS
    assert votes.isascii()
    assert votes.endswith("=" + str(40 - votes.count(",")))  # the rest summed into "...=<count>"


# -- cancellation


@pytest.mark.parametrize("mode", ["cascade", "hedge", "vote"])
async def test_it_cancels_and_awaits_every_call_when_the_caller_is_cancelled(mode: str) -> None:
    upstream = Upstream(d1=Script(delay=SLOW), d2=Script(delay=SLOW), d3=Script(delay=SLOW))
    times = times_with_p95(1, 0.01)
    ensembles = {
        "cascade": lambda: cascade(ROUTES, upstream, {}),
        "hedge": lambda: hedge(ROUTES, upstream, times, first_byte_timeout_default=5.0),
        "vote": lambda: vote(ROUTES, upstream, 3, {}),
    }
    task = asyncio.create_task(ensembles[mode]())
    await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert sorted(upstream.cancelled) == sorted(upstream.started)
    assert upstream.started == {"cascade": [1], "hedge": [1, 2], "vote": [1, 2, 3]}[mode]


async def test_it_cancels_every_stream_still_opening_when_the_caller_is_cancelled() -> None:
    opener = Opener({1: SLOW, 2: SLOW})
    task = asyncio.create_task(
        hedge_stream(ROUTES[:2], opener, times_with_p95(1, 0.01), first_byte_timeout_default=5.0)
    )
    await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert sorted(opener.log) == ["cancelled 1", "cancelled 2"]
