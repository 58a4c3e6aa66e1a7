"""The fake OpenAI upstream's failure and pacing behaviours, as an HTTP client meets them on a real socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.behaviours import Cycle, Flaky, Steps, exhausted, rate_limited
from tests.fakes.fleet import FakeFleet, RefusedPort, refused_base_url, refused_port
from tests.fakes.openai_upstream import (
    ANY_MODEL,
    CloseBeforeAnswer,
    DropMidStream,
    Fail,
    FakeUpstream,
    Hang,
    Reply,
    Stall,
)

# Long enough for a loopback answer on a loaded machine, short enough to keep a silent upstream cheap.
QUICK = 2.0
SILENCE = 0.3  # how long a test listens to an upstream that is scripted to say nothing


@pytest.fixture(scope="module")
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet(3) as upstreams:
        yield upstreams


@pytest.fixture
def fake(fleet: FakeFleet) -> FakeUpstream:
    return fleet[0]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=QUICK) as client:
        yield client


def chat(model: str, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream, **extra}


def post(http: httpx.Client, upstream: FakeUpstream, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return http.post(f"{upstream.base_url}/chat/completions", json=body, **kwargs)


def events(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of an SSE body, as they arrive."""
    for line in lines:
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def content_of(payloads: list[str]) -> str:
    chunks = [json.loads(data) for data in payloads if data != "[DONE]"]
    return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])


# --- several upstreams at once ---


def test_each_upstream_of_a_fleet_names_itself_in_its_answer_and_a_header(fleet: FakeFleet, http: httpx.Client) -> None:
    answers = [post(http, upstream, chat("fleet-names")) for upstream in fleet]

    assert [answer.json()["choices"][0]["message"]["content"] for answer in answers] == [
        "served by fake-1",
        "served by fake-2",
        "served by fake-3",
    ]
    assert [answer.headers["x-fake-upstream"] for answer in answers] == ["fake-1", "fake-2", "fake-3"]
    assert len({upstream.port for upstream in fleet}) == 3


def test_a_labelled_upstream_streams_its_name_too(fleet: FakeFleet, http: httpx.Client) -> None:
    with http.stream("POST", f"{fleet[1].base_url}/chat/completions", json=chat("fleet-stream", stream=True)) as r:
        payloads = list(events(r.iter_lines()))

    assert content_of(payloads) == "served by fake-2"
    assert payloads[-1] == "[DONE]"


def test_a_labelled_upstream_says_what_it_is_scripted_to_say(fleet: FakeFleet, http: httpx.Client) -> None:
    fleet[2].script("fleet-scripted", Reply("something else"))

    answer = post(http, fleet[2], chat("fleet-scripted"))

    assert answer.json()["choices"][0]["message"]["content"] == "something else"
    assert answer.headers["x-fake-upstream"] == "fake-3"


def test_the_fleet_tells_which_upstreams_received_a_model_in_order(fleet: FakeFleet, http: httpx.Client) -> None:
    for index in (2, 0, 2):
        post(http, fleet[index], chat("fleet-order"))
    post(http, fleet[1], chat("fleet-other"))

    assert fleet.served_by("fleet-order") == ["fake-3", "fake-1", "fake-3"]
    assert [request.body["model"] for _, request in fleet.received("fleet-other")] == ["fleet-other"]


def test_scripts_of_one_upstream_leave_the_others_alone(fleet: FakeFleet, http: httpx.Client) -> None:
    fleet[0].script("fleet-apart", Fail(503))

    assert [post(http, upstream, chat("fleet-apart")).status_code for upstream in fleet] == [503, 200, 200]


def test_reset_forgets_scripts_and_requests(http: httpx.Client) -> None:
    upstream = FakeUpstream(label="solo")
    upstream.start()
    try:
        upstream.script(ANY_MODEL, Fail(500))
        assert post(http, upstream, chat("reset-me")).status_code == 500

        upstream.reset()

        assert upstream.received() == []
        assert post(http, upstream, chat("reset-me")).status_code == 200
    finally:
        upstream.stop()


# --- error answers ---


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_has_openais_body(fake: FakeUpstream, http: httpx.Client, status: int) -> None:
    fake.script(f"fail-{status}", Fail(status, "The server had an error.", type="server_error"))

    answer = post(http, fake, chat(f"fail-{status}"))

    assert answer.status_code == status
    assert answer.json()["error"] == {
        "message": "The server had an error.",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_a_bad_gateway_can_answer_html_as_a_load_balancer_does(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("fail-html", Fail(502, raw="<html><body>502 Bad Gateway</body></html>"))

    answer = post(http, fake, chat("fail-html"))

    assert answer.status_code == 502
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text == "<html><body>502 Bad Gateway</body></html>"


def test_a_rate_limited_answer_says_when_to_retry(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("limited", rate_limited(retry_after=2))

    answer = post(http, fake, chat("limited"))

    assert (answer.status_code, answer.headers["retry-after"]) == (429, "2")
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"


def test_an_exhausted_quota_says_so_in_openais_rate_limit_headers(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("exhausted", exhausted(reset="1s"))

    answer = post(http, fake, chat("exhausted"))

    assert answer.status_code == 429
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    assert answer.headers["x-ratelimit-reset-requests"] == "1s"
    assert "retry-after" not in answer.headers


def test_a_successful_answer_can_carry_rate_limit_headers(fake: FakeUpstream, http: httpx.Client) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    fake.script("last-one", Reply(headers=headers))

    whole = post(http, fake, chat("last-one"))
    with http.stream("POST", f"{fake.base_url}/chat/completions", json=chat("last-one", stream=True)) as streamed:
        streamed.read()

    for answer in (whole, streamed):
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"
        assert answer.headers["x-ratelimit-reset-requests"] == "1s"


# --- connections that fail ---


def test_a_refused_port_refuses_connections_at_once(http: httpx.Client) -> None:
    started = time.monotonic()

    with pytest.raises(httpx.ConnectError):
        http.post(f"{refused_base_url()}/chat/completions", json=chat("nobody"))

    assert time.monotonic() - started < 1
    assert refused_port() == refused_port()


def test_a_refused_port_of_its_own_is_free_again_once_closed(http: httpx.Client) -> None:
    with RefusedPort() as port:
        with pytest.raises(httpx.ConnectError):
            http.get(f"{port.base_url}/models")
        assert port.port != refused_port()


def test_a_connection_closed_before_any_byte_is_a_protocol_error(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("closed", CloseBeforeAnswer())

    with pytest.raises(httpx.RemoteProtocolError):
        post(http, fake, chat("closed"))


def test_a_connection_reset_before_any_byte_is_a_read_error(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("reset", CloseBeforeAnswer(reset=True))

    with pytest.raises(httpx.ReadError, match="reset"):
        post(http, fake, chat("reset"))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_hanging_upstream_sends_no_byte_and_sees_the_client_leave(
    fake: FakeUpstream, http: httpx.Client, stream: bool
) -> None:
    model = f"hang-{stream}"
    fake.script(model, Hang())

    with pytest.raises(httpx.ReadTimeout):
        post(http, fake, chat(model, stream=stream), timeout=SILENCE)

    (log,) = fake.answers(model)
    assert log.closed_early.wait(QUICK)
    assert log.sent_at == []


# --- streams that stall or break ---


def test_a_stream_stalls_after_k_events_until_the_client_leaves(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("stall", Stall(after=3, content="one two three four"))
    received: list[str] = []

    with http.stream(
        "POST", f"{fake.base_url}/chat/completions", json=chat("stall", stream=True), timeout=SILENCE
    ) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            received.extend(events(r.iter_lines()))  # keeps what came before the timeout

    assert content_of(received) == "one two"  # the role, then two words
    (log,) = fake.answers("stall")
    assert log.closed_early.wait(QUICK)
    assert (len(log.sent_at), log.finished) == (3, False)


def test_a_stream_may_stall_before_its_first_event_once_the_headers_are_out(
    fake: FakeUpstream, http: httpx.Client
) -> None:
    fake.script("stall-0", Stall(after=0))

    with http.stream(
        "POST", f"{fake.base_url}/chat/completions", json=chat("stall-0", stream=True), timeout=SILENCE
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        with pytest.raises(httpx.ReadTimeout):
            r.read()


def test_a_stream_that_stalls_for_a_while_then_finishes(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("pause", Stall(after=2, seconds=SILENCE, content="slow then done"))

    with http.stream("POST", f"{fake.base_url}/chat/completions", json=chat("pause", stream=True)) as r:
        payloads = list(events(r.iter_lines()))

    assert content_of(payloads) == "slow then done"
    assert payloads[-1] == "[DONE]"
    (log,) = fake.answers("pause")
    assert log.finished
    assert log.sent_at[2] - log.sent_at[1] >= SILENCE


def test_a_whole_answer_can_stall_after_its_headers(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("stall-whole", Stall())

    with http.stream("POST", f"{fake.base_url}/chat/completions", json=chat("stall-whole"), timeout=SILENCE) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            r.read()
    (log,) = fake.answers("stall-whole")
    assert log.closed_early.wait(QUICK)


@pytest.mark.parametrize(
    ("reset", "error"), [(False, httpx.RemoteProtocolError), (True, httpx.ReadError)], ids=["closed", "reset"]
)
def test_a_stream_dropped_after_k_events_breaks_the_connection(
    fake: FakeUpstream, http: httpx.Client, reset: bool, error: type[Exception]
) -> None:
    model = f"drop-{reset}"
    fake.script(model, DropMidStream(after=3, content="one two three four", reset=reset))
    received: list[str] = []

    with (
        pytest.raises(error),
        http.stream("POST", f"{fake.base_url}/chat/completions", json=chat(model, stream=True)) as r,
    ):
        received.extend(events(r.iter_lines()))

    assert content_of(received) == "one two"


# --- a slow upstream ---


def test_a_slow_upstream_waits_before_the_first_byte_and_between_events(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("slow", Reply("a b c", first_byte=SILENCE, delay=0.05))

    started = time.monotonic()
    with http.stream("POST", f"{fake.base_url}/chat/completions", json=chat("slow", stream=True)) as r:
        headers_at = time.monotonic()
        r.read()

    assert headers_at - started >= SILENCE
    (log,) = fake.answers("slow")
    gaps = [later - earlier for earlier, later in zip(log.sent_at, log.sent_at[1:], strict=False)]
    assert min(gaps) >= 0.05


def test_a_slow_whole_answer_waits_before_its_first_byte(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("slow-whole", Reply("late", first_byte=SILENCE))

    started = time.monotonic()
    answer = post(http, fake, chat("slow-whole"))

    assert time.monotonic() - started >= SILENCE
    assert answer.json()["choices"][0]["message"]["content"] == "late"


def test_a_slow_upstream_is_slow_on_other_endpoints_too(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("slow-embed", Reply(first_byte=SILENCE))

    started = time.monotonic()
    answer = http.post(f"{fake.base_url}/embeddings", json={"model": "slow-embed", "input": "hello"})

    assert time.monotonic() - started >= SILENCE
    assert len(answer.json()["data"][0]["embedding"]) == 4


# --- scripts that choose per request ---


def test_a_cycle_fails_every_other_request(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("alternate", Cycle(Fail(500), Reply()))

    assert [post(http, fake, chat("alternate")).status_code for _ in range(5)] == [500, 200, 500, 200, 500]


def test_steps_fail_then_recover_for_good(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("recovers", Steps(Fail(503), rate_limited(1), Reply()))

    assert [post(http, fake, chat("recovers")).status_code for _ in range(5)] == [503, 429, 200, 200, 200]


def test_scripting_a_model_again_starts_its_choice_over(fake: FakeUpstream, http: httpx.Client) -> None:
    fake.script("again", Cycle(Fail(500), Reply()))
    post(http, fake, chat("again"))

    fake.script("again", Cycle(Fail(500), Reply()))

    assert post(http, fake, chat("again")).status_code == 500


def test_a_flaky_upstream_fails_the_same_requests_in_every_run(fake: FakeUpstream, http: httpx.Client) -> None:
    flaky = Flaky(0.5, seed=7)
    fake.script("flaky", flaky)

    statuses = [post(http, fake, chat("flaky")).status_code for _ in range(20)]

    assert statuses == [500 if flaky.fails(index) else 200 for index in range(20)]
    assert 500 in statuses
    assert 200 in statuses


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_a_flaky_upstream_fails_its_share_of_requests(p: float) -> None:
    failures = sum(Flaky(p).fails(index) for index in range(10_000))

    assert failures == pytest.approx(10_000 * p, abs=200)  # within 2 points of the share


async def test_choices_hold_under_concurrent_requests(fake: FakeUpstream) -> None:
    fake.script("concurrent", Cycle(Fail(500), Reply()))

    async with httpx.AsyncClient(timeout=QUICK) as client:
        answers = await asyncio.gather(
            *(client.post(f"{fake.base_url}/chat/completions", json=chat("concurrent")) for _ in range(20))
        )

    assert sorted(answer.status_code for answer in answers) == [200] * 10 + [500] * 10


def test_a_script_for_any_model_answers_models_without_their_own(http: httpx.Client) -> None:
    upstream = FakeUpstream()
    upstream.start()
    try:
        upstream.script(ANY_MODEL, Fail(503))
        upstream.script("special", Reply("fine"))

        assert post(http, upstream, chat("whatever")).status_code == 503
        assert post(http, upstream, chat("special")).status_code == 200
    finally:
        upstream.stop()


# --- what the upstream received ---


def test_it_records_an_assistant_prefix_as_sent(fake: FakeUpstream, http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "Count to five."},
        {"role": "assistant", "content": "one two"},
    ]

    post(http, fake, {"model": "prefixed", "messages": messages, "stream": True})

    (received,) = fake.received("prefixed")
    assert received.messages == messages
    assert received.messages[-1] == {"role": "assistant", "content": "one two"}
