"""Rate limits as a client sees them: OpenAI's 429 body, Retry-After and the x-ratelimit-* headers.

Limits are rows committed here; both servers read them from their snapshots and
share one Redis, so a limit holds across processes. The fake upstream reports
exactly the tokens Portico reserved for a request (its prompt estimate plus
`max_tokens`), so settling a request never hands tokens back and every count
here is exact.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from billing import tokens
from billing.limits.spares import DENSE
from billing.models import RateLimit, UsageRecord
from providers.models import ModelRoute
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Hang, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Say hello to the rate limiter"}]
OUTPUT = 8  # max_tokens of every request here, and the words of every answer
ANSWER = " ".join(["word"] * OUTPUT)
# The x-ratelimit-reset-* format: "1h2m3.5s", "6m0s", "2.5s", or "120ms" below a second.
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?|(\d+)ms")


def seconds_of(duration: str) -> float:
    """An OpenAI rate-limit reset duration ("120ms", "1s", "6m0s", "1h2m3.5s") in seconds."""
    match = DURATION.fullmatch(duration)
    assert duration, "an empty duration"
    assert match, f"not an OpenAI duration: {duration!r}"
    hours, minutes, seconds, millis = match.groups()
    if millis is not None:
        return int(millis) / 1000
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("120ms", 0.12), ("1s", 1.0), ("2.5s", 2.5), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("0s", 0.0)],
)
def test_reset_durations_are_read_the_way_openai_writes_them(duration: str, seconds: float) -> None:
    assert seconds_of(duration) == pytest.approx(seconds)


def reservation(route: ModelRoute) -> int:
    """The tokens Portico reserves for one request here: its prompt estimate plus max_tokens."""
    return tokens.count_chat_prompt({"messages": HELLO}, model=route.upstream_model) + OUTPUT


def scripted(upstream: FakeUpstream, route: ModelRoute, **reply: Any) -> ModelRoute:
    """Have the fake report exactly the reservation as the request's usage."""
    prompt = reservation(route) - OUTPUT
    upstream.script(route.upstream_model, Reply(ANSWER, prompt_tokens=prompt, **reply))
    return route


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute) -> ModelRoute:
    return scripted(upstream, upstream_route)


@pytest.fixture
def teammate(key: IssuedKey) -> IssuedKey:
    return make_key(tenant=key.api_key.tenant, name="teammate")


@pytest.fixture
def outsider(committed_db: None, tag: str) -> IssuedKey:
    return make_key(tenant=make_tenant(slug=f"outsider-{tag}"), name="outsider")


def body(route: ModelRoute, **extra: Any) -> dict[str, Any]:
    return {"model": route.public_id, "messages": HELLO, "max_tokens": OUTPUT, **extra}


def chat(server: PorticoServer, key: IssuedKey, route: ModelRoute, **extra: Any) -> httpx.Response:
    return server.http.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {key.plaintext}"}, json=body(route, **extra)
    )


def statuses(server: PorticoServer, key: IssuedKey, route: ModelRoute, count: int) -> list[int]:
    return [chat(server, key, route).status_code for _ in range(count)]


def eventually(check: Callable[[], bool], *, within: float = 3.0) -> None:
    """Poll for something that happens off the request path (a slot released after the answer went out)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.02)


def assert_rate_limit_error(response: httpx.Response, kind: str, *, names: str) -> None:
    assert response.status_code == 429
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert (error["type"], error["param"], error["code"]) == (kind, None, "rate_limit_exceeded")
    assert names in error["message"]
    assert re.fullmatch(r"[1-9]\d*", response.headers["retry-after"])


# --- requests per minute -------------------------------------------------------------------------


def test_the_request_after_the_rpm_is_used_up_raises_openais_rate_limit_error(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=3)
    settle()

    with portico.client(key.plaintext) as client:
        for _ in range(3):
            client.chat.completions.create(**body(route))
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**body(route))

    error = refused.value
    assert error.status_code == 429
    assert (error.type, error.code, error.param) == ("requests", "rate_limit_exceeded", None)
    assert isinstance(error.body, dict)
    assert error.body == {**error.body, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    assert error.body["message"].startswith("Rate limit reached for requests per minute (RPM) on this API key: Limit 3")
    assert error.response.json() == {"error": error.body}
    # One request of a 3 RPM bucket comes back every 20 s; Retry-After is whole seconds, rounded up.
    assert 1 <= int(error.response.headers["retry-after"]) <= 20


def test_every_answer_counts_down_the_remaining_requests(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=5)
    settle()

    answers = [chat(portico, key, route) for _ in range(6)]

    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert [answer.headers["x-ratelimit-limit-requests"] for answer in answers] == ["5"] * 6
    assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == ["4", "3", "2", "1", "0", "0"]
    # Each request pushes the bucket's "full again" time 12 s further out (60 s / 5).
    resets = [seconds_of(answer.headers["x-ratelimit-reset-requests"]) for answer in answers]
    for taken, reset in enumerate(resets[:5], 1):
        assert 12 * taken - 2 < reset <= 12 * taken
    assert 58 < resets[5] <= 60
    assert not any(name.endswith("-tokens") for answer in answers for name in answer.headers)
    assert_rate_limit_error(answers[5], "requests", names="requests per minute (RPM) on this API key")
    assert 1 <= int(answers[5].headers["retry-after"]) <= 12


def test_a_streamed_answer_carries_the_rate_limit_headers_too(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=10)
    settle()

    with portico.client(key.plaintext) as client:
        raw = client.chat.completions.with_raw_response.create(**body(route, stream=True))
        chunks = list(raw.parse())

    assert raw.headers["content-type"].startswith("text/event-stream")
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("10", "9")
    assert seconds_of(raw.headers["x-ratelimit-reset-requests"]) == pytest.approx(6, abs=1)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ANSWER


def test_the_tokens_headers_count_the_reserved_tokens_when_a_tpm_is_set(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    tpm = 6000  # 100 tokens a second come back: less than one request's worth per request here
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=100, tokens_per_minute=tpm)
    settle()
    cost = reservation(route)

    started = time.monotonic()
    answers = []
    for _ in range(3):
        answers.append(chat(portico, key, route))
        # Calls further apart than DENSE are not steady: no spare is kept for the next (spares.py), so each call
        # acquires for itself and its headers are Redis's exact counts. Spares' own headers are tested there.
        time.sleep(DENSE * 1.5)
    took = time.monotonic() - started

    assert [answer.status_code for answer in answers] == [200] * 3
    assert [answer.headers["x-ratelimit-limit-tokens"] for answer in answers] == [str(tpm)] * 3
    assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == ["99", "98", "97"]
    remaining = [int(answer.headers["x-ratelimit-remaining-tokens"]) for answer in answers]
    resets = [seconds_of(answer.headers["x-ratelimit-reset-tokens"]) for answer in answers]
    for taken, (left, reset) in enumerate(zip(remaining, resets, strict=True), 1):
        # Exactly the reservations, give or take the tokens refilled (tpm / 60 a second) during the burst.
        assert tpm - taken * cost <= left <= tpm - taken * cost + tpm / 60 * took
        assert taken * cost * 60 / tpm - took <= reset <= taken * cost * 60 / tpm + 0.001


# --- tokens per minute ---------------------------------------------------------------------------


def test_a_request_whose_max_tokens_alone_exceed_the_tpm_is_refused(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, tokens_per_minute=100)
    settle()

    with portico.client(key.plaintext) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**body(route, max_tokens=101))
        client.chat.completions.create(**body(route))  # the refusal reserved nothing

    error = refused.value
    assert (error.type, error.code) == ("tokens", "rate_limit_exceeded")
    assert isinstance(error.body, dict)
    assert error.body["message"].startswith("Request too large for tokens per minute (TPM) on this API key: Limit 100")
    assert "must be reduced" in error.body["message"]
    # Waiting cannot cure it: the smallest Retry-After a client can be told.
    assert error.response.headers["retry-after"] == "1"
    assert len(upstream.received(route.upstream_model)) == 1


def test_a_concurrent_burst_cannot_take_more_tokens_than_the_tpm(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    cost = reservation(route)
    # Room for three and a half requests; the half would take the bucket 8 s to refill.
    tpm = 3 * cost + cost // 2
    RateLimit.objects.create(api_key=key.api_key, tokens_per_minute=tpm)
    settle()

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: burst_chat(portico, key, route), range(10)))

    assert Counter(answer.status_code for answer in answers) == {200: 3, 429: 7}
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert_rate_limit_error(refused, "tokens", names=f"tokens per minute (TPM) on this API key: Limit {tpm}")
        # What the three left, plus at most a token refilled while the burst went on.
        assert 0 <= int(refused.headers["x-ratelimit-remaining-tokens"]) - (tpm - 3 * cost) <= 1


def burst_chat(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> httpx.Response:
    """One request on a connection of its own, so a burst's requests are truly in flight together."""
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        return http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key.plaintext}"}, json=body(route))


# --- requests in flight --------------------------------------------------------------------------


@pytest.fixture
def slow_route(upstream: FakeUpstream, route: ModelRoute) -> ModelRoute:
    """Streams take about a second (eight words, 0.12 s apart); non-streamed answers come at once."""
    return scripted(upstream, route, delay=0.12)


def open_stream(stack: ExitStack, server: PorticoServer, key: IssuedKey, route: ModelRoute) -> httpx.Response:
    response = stack.enter_context(
        server.http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json=body(route, stream=True),
        )
    )
    assert response.status_code == 200  # admitted: the headers go out only after the limiter said yes
    return response


def test_the_third_concurrent_request_is_refused_until_one_finishes(
    portico: PorticoServer, key: IssuedKey, slow_route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, max_concurrent=2)
    settle()

    with ExitStack() as stack:
        first = open_stream(stack, portico, key, slow_route)
        second = open_stream(stack, portico, key, slow_route)
        refused = chat(portico, key, slow_route)
        for stream in (first, second):
            assert "data: [DONE]" in stream.read().decode()

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == (
        "requests",
        "rate_limit_exceeded",
    )  # OpenAI's types, the message says which
    assert "Too many concurrent requests on this API key: Limit 2, In flight 2" in error["message"]
    assert refused.headers["retry-after"] == "1"
    eventually(lambda: chat(portico, key, slow_route).status_code == 200)


def test_a_sequential_client_never_meets_its_concurrency_cap(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, max_concurrent=1)
    settle()

    streamed = [chat(portico, key, route, stream=True).status_code for _ in range(10)]
    whole = statuses(portico, key, route, 10)

    assert streamed + whole == [200] * 20


def test_a_client_leaving_mid_stream_frees_its_slot(
    portico: PorticoServer, key: IssuedKey, slow_route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, max_concurrent=2)
    settle()

    with ExitStack() as stack:
        # Kept: a dropped iterator would close its stream at once.
        streams = [open_stream(stack, portico, key, slow_route).iter_raw() for _ in range(2)]
        for stream in streams:
            next(stream)
        assert chat(portico, key, slow_route).status_code == 429
    for log in upstream.answers(slow_route.upstream_model):
        assert log.closed_early.wait(2)

    eventually(lambda: chat(portico, key, slow_route).status_code == 200)
    with ExitStack() as stack:  # both slots, not just one
        open_stream(stack, portico, key, slow_route)
        open_stream(stack, portico, key, slow_route)


def test_a_client_giving_up_before_the_answer_frees_its_slot(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, max_concurrent=1)
    settle()
    upstream.script(route.upstream_model, Hang())

    with pytest.raises(httpx.ReadTimeout):
        portico.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json=body(route),
            timeout=0.5,
        )
    [log] = upstream.answers(route.upstream_model)
    assert log.closed_early.wait(2)
    scripted(upstream, route)

    eventually(lambda: chat(portico, key, route).status_code == 200)
    # And the abandoned request has its ledger line, like every admitted one.
    abandoned = UsageRecord.objects.filter(api_key_id=key.api_key.pk, client_disconnected=True)
    eventually(abandoned.exists, within=5)


# --- whose limit -----------------------------------------------------------------------------------


def test_a_tenant_limit_is_shared_by_its_keys_and_spares_other_tenants(
    portico: PorticoServer,
    key: IssuedKey,
    teammate: IssuedKey,
    outsider: IssuedKey,
    route: ModelRoute,
    settle: Settle,
) -> None:
    RateLimit.objects.create(tenant=key.api_key.tenant, requests_per_minute=3)
    settle()

    assert statuses(portico, key, route, 2) == [200, 200]
    assert statuses(portico, teammate, route, 2) == [200, 429]
    refused = chat(portico, key, route)

    assert_rate_limit_error(refused, "requests", names="requests per minute (RPM) on your organization: Limit 3")
    assert statuses(portico, outsider, route, 4) == [200] * 4


def test_a_key_limit_binds_only_that_key(
    portico: PorticoServer, key: IssuedKey, teammate: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=1)
    settle()

    assert statuses(portico, key, route, 2) == [200, 429]
    assert statuses(portico, teammate, route, 3) == [200] * 3


@pytest.mark.parametrize(("owner", "label"), [("key", "this API key"), ("tenant", "your organization")])
def test_a_model_override_applies_only_to_that_model(
    portico: PorticoServer,
    key: IssuedKey,
    outsider: IssuedKey,
    route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
    tag: str,
    owner: str,
    label: str,
) -> None:
    other = scripted(upstream, make_route(provider=route.provider, public_id=f"other-{tag}", upstream_model=f"o-{tag}"))
    whose = {"api_key": key.api_key} if owner == "key" else {"tenant": key.api_key.tenant}
    RateLimit.objects.create(**whose, requests_per_minute=4)
    RateLimit.objects.create(**whose, model=route.public_id, requests_per_minute=2)
    settle()

    assert statuses(portico, key, route, 2) == [200, 200]
    on_model = chat(portico, key, route)
    # The other model is held only by the limit on every model, which the first two requests counted against.
    assert statuses(portico, key, other, 3) == [200, 200, 429]
    overall = chat(portico, key, other)

    assert_rate_limit_error(on_model, "requests", names=f"on {label} on model {route.public_id}: Limit 2")
    assert on_model.headers["x-ratelimit-limit-requests"] == "2"
    assert_rate_limit_error(overall, "requests", names=f"on {label}: Limit 4")
    assert overall.headers["x-ratelimit-limit-requests"] == "4"
    assert statuses(portico, outsider, route, 3) == [200] * 3


# --- across processes ----------------------------------------------------------------------------

CLIENTS = 16  # threads, half on each server
WINDOW = 3.0  # seconds of hammering, at least
METERED = 1.0  # seconds of hammering, at least, after the bucket ran dry (a slow machine takes longer to empty it)
GIVE_UP = 20.0
PER_MINUTE = 600  # requests a minute: a bucket of 600 that refills 10 a second


def hammer(servers: tuple[PorticoServer, ...], key: IssuedKey, route: ModelRoute) -> tuple[Counter[int], float]:
    """Send requests from CLIENTS threads until WINDOW is over and the limit has held for METERED seconds.

    Returns the statuses seen, and the window as measured: from the moment all
    clients start to the last answer.
    """
    began: list[float] = []
    ready = threading.Barrier(CLIENTS, action=lambda: began.append(time.monotonic()))
    lock = threading.Lock()
    seen: Counter[int] = Counter()
    dry_at: list[float] = []  # when the first refusal came back
    ends: list[float] = []

    def going() -> bool:
        now = time.monotonic()
        if now < began[0] + WINDOW:
            return True
        return now < began[0] + GIVE_UP and (not dry_at or now < dry_at[0] + METERED)

    def client(server: PorticoServer) -> None:
        mine: Counter[int] = Counter()
        headers = {"Authorization": f"Bearer {key.plaintext}"}
        with httpx.Client(base_url=server.base_url, timeout=10, headers=headers) as http:
            http.get("/v1/models")  # connected before the clock starts
            ready.wait()
            while going():
                status = http.post("/v1/chat/completions", json=body(route)).status_code
                mine[status] += 1
                if status == 429 and not dry_at:
                    with lock:
                        dry_at[:] = dry_at or [time.monotonic()]
            end = time.monotonic()
        with lock:
            seen.update(mine)
            ends.append(end)

    threads = [threading.Thread(target=client, args=(servers[i % len(servers)],)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen, max(ends) - began[0]


@pytest.fixture
def both(portico: PorticoServer, second_portico: PorticoServer) -> tuple[PorticoServer, PorticoServer]:
    return portico, second_portico


@pytest.mark.parametrize("unit", ["requests", "tokens"])
def test_two_processes_enforce_one_global_limit(
    both: tuple[PorticoServer, PorticoServer], key: IssuedKey, route: ModelRoute, settle: Settle, unit: str
) -> None:
    limit = {"requests_per_minute": PER_MINUTE}
    if unit == "tokens":
        limit = {"tokens_per_minute": PER_MINUTE * reservation(route)}
    RateLimit.objects.create(api_key=key.api_key, **limit)
    settle(*both)

    seen, window = hammer(both, key, route)

    # A full bucket, then what it refills over the window.
    expected = PER_MINUTE + PER_MINUTE / 60 * window
    admitted = seen[200]
    report = f"{unit}: admitted {admitted}, expected {expected:.1f} over {window:.3f} s, refused {seen[429]}"
    print(report)
    assert set(seen) == {200, 429}, report
    # Refusals mean the bucket ran dry: from then on only its refill let requests through.
    assert seen[429] > 0, f"the clients never reached the limit: {report}"
    assert abs(admitted - expected) <= 0.01 * expected, report
