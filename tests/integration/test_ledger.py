"""Every request a server answers lands in the usage ledger once, with what it cost, however it ended.

The client sends an x-request-id of its own on each request, so a test finds
its rows by `client_request_id` and can tell one row from two. A row is
committed before its spool file is deleted, so once every expected row is in
and no spool file mentions these requests, no further row can arrive: the
counts a test asserts are final, without sleeping to find out.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from django.utils import timezone
from openai import OpenAI

from billing import tokens
from billing.models import Price, UsageRecord
from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import (
    Behaviour,
    CloseBeforeAnswer,
    DropMidStream,
    Fail,
    FakeUpstream,
    Hang,
    Reply,
)
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

# The directory the session's servers spool to (tests/testenv.py gives each run its own).
SPOOL = Path(os.environ["PORTICO_LEDGER_DIR"])
# A server flushes its spool every half second; a row later than this is lost, not late.
ARRIVAL_TIMEOUT = 10.0
# USD per million tokens: input, output, cached input.
PRICE = (Decimal("2.5"), Decimal("10"), Decimal("1.25"))
HELLO = [{"role": "user", "content": "Say hello."}]
ANSWER = "Hello from the fake upstream, five six seven."
LONG_ANSWER = " ".join(f"word{i}" for i in range(40))


def new_request_id() -> str:
    return f"client-{uuid.uuid4()}"


def spooled(spool: Path, request_ids: Collection[str]) -> set[str]:
    """The request ids that some file in the spool still holds a line of."""
    found: set[str] = set()
    if not spool.exists():
        return found
    wanted = [(request_id, request_id.encode()) for request_id in request_ids]
    for path in spool.iterdir():
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # inserted and deleted while we looked
            continue
        found |= {request_id for request_id, needle in wanted if needle in data}
    return found


def ledger_rows(
    request_ids: Collection[str], *, spool: Path = SPOOL, timeout: float = ARRIVAL_TIMEOUT
) -> list[UsageRecord]:
    """The ledger rows of these client request ids, once each has one and none is left in the spool."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.filter(client_request_id__in=wanted).order_by("created_at"))
        missing = wanted - {row.client_request_id for row in rows}
        waiting = spooled(spool, wanted)
        if not missing and not waiting:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout:g} s, {len(missing)} of {len(wanted)} requests have no ledger row"
                f" and {len(waiting)} are still spooled in {spool}"
            )
        time.sleep(0.02)


def assert_once_each(rows: list[UsageRecord], request_ids: Collection[str]) -> None:
    counts = Counter(row.client_request_id for row in rows)
    assert counts == Counter(set(request_ids)), "a request has no ledger row, or more than one"
    assert len({row.request_id for row in rows}) == len(rows)


def cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    per_million = (prompt - cached) * PRICE[0] + completion * PRICE[1] + cached * PRICE[2]
    return (per_million / 1_000_000).quantize(Decimal("1E-10"))


def chat_prompt_tokens(body: dict[str, Any], route: ModelRoute) -> int:
    return tokens.count_chat_prompt(body, model=route.upstream_model)


def priced(route: ModelRoute) -> ModelRoute:
    Price.objects.create(
        route=route.model,
        effective_from=timezone.now() - timedelta(hours=1),
        input_per_million=PRICE[0],
        output_per_million=PRICE[1],
        cached_input_per_million=PRICE[2],
    )
    return route


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER))
    priced(upstream_route)
    settle()
    return upstream_route


def assert_belongs_to(row: UsageRecord, key: IssuedKey, route: ModelRoute) -> None:
    assert (row.tenant_id, row.api_key_id, row.key_prefix) == (
        key.api_key.tenant_id,
        key.api_key.pk,
        key.api_key.prefix,
    )
    assert (row.model, row.provider, row.upstream_model) == (route.public_id, route.provider.name, route.upstream_model)
    assert row.operation == "chat"
    assert row.request_id.startswith("req_")


# --- answers as they should be ---


def test_a_whole_answer_is_recorded_once_with_what_it_cost(client: OpenAI, key: IssuedKey, route: ModelRoute) -> None:
    request_id = new_request_id()

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    usage = raw.parse().usage

    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    assert usage is not None
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (11, 8, 0)
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 8)
    assert row.cost == cost(11, 8) == Decimal(raw.headers["x-portico-cost"])
    assert (row.status, row.error_type, row.streamed, row.tokens_estimated) == (200, "", False, False)
    assert (row.client_disconnected, row.first_token_ms) == (False, None)
    assert row.latency_ms < 5_000
    assert raw.headers["x-request-id"] == request_id


@pytest.mark.parametrize("include_usage", [False, True], ids=["usage not asked for", "usage asked for"])
def test_a_stream_is_recorded_with_its_usage_whether_or_not_the_client_asked_for_it(
    client: OpenAI, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, include_usage: bool
) -> None:
    upstream.script(route.upstream_model, Reply(ANSWER, delay=0.05))
    request_id = new_request_id()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    started = time.monotonic()
    chunks = list(
        client.chat.completions.create(
            model=route.public_id, messages=HELLO, stream=True, extra_headers={"x-request-id": request_id}, **options
        )
    )
    took_ms = (time.monotonic() - started) * 1000

    usage_chunks = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)
    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (11, 8, False)
    assert row.cost == cost(11, 8)
    assert (row.status, row.error_type, row.streamed, row.client_disconnected) == (200, "", True, False)
    # Eleven events 50 ms apart: the first token comes at once, the answer takes half a second.
    assert row.first_token_ms is not None
    assert row.first_token_ms < 250
    assert 450 <= row.latency_ms <= took_ms


class CachingUpstream(FakeUpstream):
    """The fake upstream, reporting most of each prompt as read from the provider's prompt cache."""

    CACHED = 8

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        response = await super()._chat(request)
        if isinstance(response, web.Response) and response.status == 200 and response.body is not None:
            body = json.loads(response.body)  # type: ignore[arg-type]
            body["usage"]["prompt_tokens_details"] = {"cached_tokens": self.CACHED}
            return web.json_response(body)
        return response


@pytest.fixture(scope="module")
def caching_upstream() -> Iterator[CachingUpstream]:
    fake = CachingUpstream()
    fake.start()
    yield fake
    fake.stop()


def test_cached_prompt_tokens_are_recorded_and_charged_at_the_cached_price(
    portico: PorticoServer, key: IssuedKey, caching_upstream: CachingUpstream, settle: Settle, tag: str
) -> None:
    provider = make_provider(kind="openai", name=f"caching-{tag}", base_url=caching_upstream.base_url)
    route = priced(make_route(provider=provider, public_id=f"cached-{tag}", upstream_model=f"cached-model-{tag}"))
    caching_upstream.script(route.upstream_model, Reply(ANSWER))
    settle()
    request_id = new_request_id()

    with portico.client(key.plaintext) as client:
        client.chat.completions.create(
            model=route.public_id, messages=HELLO, extra_headers={"x-request-id": request_id}
        )

    [row] = ledger_rows([request_id])
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (11, 8, 8)
    assert row.cost == cost(11, 8, cached=8)


def test_many_requests_across_two_servers_make_as_many_rows(
    portico: PorticoServer, second_portico: PorticoServer, key: IssuedKey, route: ModelRoute, settle: Settle
) -> None:
    settle(portico, second_portico)
    request_ids = [new_request_id() for _ in range(48)]
    failures: list[BaseException] = []

    def send(server: PorticoServer, share: list[str]) -> None:
        with server.client(key.plaintext) as client:
            for n, request_id in enumerate(share):
                try:
                    create = client.chat.completions.create
                    headers = {"x-request-id": request_id}
                    if n % 2:
                        list(create(model=route.public_id, messages=HELLO, stream=True, extra_headers=headers))
                    else:
                        create(model=route.public_id, messages=HELLO, extra_headers=headers)
                except openai.OpenAIError as exc:
                    failures.append(exc)

    threads = [
        threading.Thread(target=send, args=((portico, second_portico)[n % 2], request_ids[n::8])) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    rows = ledger_rows(request_ids)
    assert_once_each(rows, request_ids)
    assert UsageRecord.objects.filter(api_key_id=key.api_key.pk).count() == 48
    assert Counter(row.streamed for row in rows) == {True: 24, False: 24}


def test_a_request_without_an_id_of_its_own_is_recorded_under_the_gateways(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute
) -> None:
    response = portico.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}"},
        json={"model": route.public_id, "messages": HELLO},
    )

    assert response.status_code == 200
    gateway_id = response.headers["x-request-id"]
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while not UsageRecord.objects.filter(request_id=gateway_id).exists():
        assert time.monotonic() < deadline, "the request has no ledger row"
        time.sleep(0.02)
    assert UsageRecord.objects.get(request_id=gateway_id).client_request_id == ""


# --- answers that went wrong ---


@pytest.mark.parametrize(
    ("behaviour", "status", "error_type"),
    [
        pytest.param(Fail(500), 502, "upstream_error", id="the upstream failed"),
        pytest.param(Fail(503, code="overloaded"), 503, "upstream_unavailable", id="the upstream is overloaded"),
        pytest.param(
            Fail(429, type="rate_limit_error", code="rate_limit_exceeded"),
            429,
            "upstream_rate_limited",
            id="the upstream limited us",
        ),
        pytest.param(Fail(400, code="context_length_exceeded"), 400, "upstream_invalid_request", id="a bad request"),
        pytest.param(CloseBeforeAnswer(), 502, "upstream_unreachable", id="the upstream hung up"),
        pytest.param(Hang(), 504, "upstream_timeout", id="the upstream never answered"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_upstream_failure_is_recorded_with_the_status_the_client_got(
    client: OpenAI,
    key: IssuedKey,
    route: ModelRoute,
    upstream: FakeUpstream,
    settle: Settle,
    behaviour: Behaviour,
    status: int,
    error_type: str,
    stream: bool,
) -> None:
    provider = route.provider
    provider.read_timeout = 0.3  # for the upstream that never answers
    provider.save()
    settle()
    upstream.script(route.upstream_model, behaviour)
    request_id = new_request_id()

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model=route.public_id, messages=HELLO, stream=stream, extra_headers={"x-request-id": request_id}
        )

    assert raised.value.status_code == status
    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    assert (row.status, row.error_type, row.streamed) == (status, error_type, stream)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated, row.cost) == (0, 0, False, Decimal(0))


def test_a_stream_the_upstream_dropped_is_charged_for_what_was_relayed(
    client: OpenAI, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream
) -> None:
    drop = DropMidStream(after=4)  # the role, then "this stream will"
    upstream.script(route.upstream_model, drop)
    request_id = new_request_id()
    body = {"model": route.public_id, "messages": HELLO, "stream": True}
    received: list[str] = []

    stream = client.chat.completions.create(**body, extra_headers={"x-request-id": request_id})
    with pytest.raises(openai.APIError, match="ended the stream before it was complete|dropped the connection"):
        received.extend(chunk.choices[0].delta.content or "" for chunk in stream)

    assert "".join(received) == "this stream will"
    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    prompt = chat_prompt_tokens(body, route)
    completion = tokens.count_text("this stream will", model=route.upstream_model)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (prompt, completion, True)
    assert row.cost == cost(prompt, completion)
    assert (row.status, row.error_type, row.streamed, row.client_disconnected) == (
        502,
        "upstream_unreachable",
        True,
        False,
    )
    assert row.first_token_ms is not None


def test_a_client_that_leaves_mid_stream_is_charged_for_what_was_generated(
    client: OpenAI, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream
) -> None:
    upstream.script(route.upstream_model, Reply(LONG_ANSWER, delay=0.05))
    request_id = new_request_id()
    body = {"model": route.public_id, "messages": HELLO, "stream": True}

    stream = client.chat.completions.create(**body, extra_headers={"x-request-id": request_id})
    read = [next(stream) for _ in range(6)]  # the role and five words
    stream.close()

    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    [answer] = upstream.answers(route.upstream_model)
    assert answer.closed_early.wait(2)
    words = LONG_ANSWER.split()
    # Portico counts what it relayed: at least what the client read, at most what the upstream sent.
    relayed = {
        tokens.count_text(" ".join(words[:n]), model=route.upstream_model)
        for n in range(len(read) - 1, len(answer.sent_at))
    }
    assert row.completion_tokens in relayed
    assert row.completion_tokens < tokens.count_text(LONG_ANSWER, model=route.upstream_model)
    assert (row.prompt_tokens, row.tokens_estimated) == (chat_prompt_tokens(body, route), True)
    assert row.cost == cost(row.prompt_tokens, row.completion_tokens)
    assert (row.status, row.streamed, row.client_disconnected) == (200, True, True)


def test_a_client_that_gives_up_waiting_for_a_whole_answer_is_recorded_as_gone(
    portico: PorticoServer, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream
) -> None:
    upstream.script(route.upstream_model, Hang())
    request_id = new_request_id()
    body = {"model": route.public_id, "messages": HELLO}

    with portico.client(key.plaintext, timeout=0.5) as impatient, pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(**body, extra_headers={"x-request-id": request_id})

    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    assert (row.client_disconnected, row.streamed, row.first_token_ms) == (True, False, None)
    # The prompt was sent upstream, so it is charged, as Portico counts it; nothing came back.
    assert (row.prompt_tokens, row.completion_tokens) == (chat_prompt_tokens(body, route), 0)
    assert row.tokens_estimated
    assert row.cost == cost(row.prompt_tokens, 0)


@pytest.fixture
def usageless_route(
    upstream: FakeUpstream, upstream_credential: str, key: IssuedKey, settle: Settle, tag: str
) -> ModelRoute:
    """A route to a server that rejects `stream_options`, so its streams carry no usage."""
    provider = make_provider(
        kind="openai",
        name=f"no-usage-{tag}",
        base_url=upstream.base_url,
        credential=upstream_credential,
        accepts_stream_options=False,
    )
    route = priced(make_route(provider=provider, public_id=f"no-usage-{tag}", upstream_model=f"llama-{tag}"))
    upstream.script(route.upstream_model, Reply(ANSWER))
    settle()
    return route


def test_a_stream_without_usage_is_counted_by_portico(
    client: OpenAI, key: IssuedKey, usageless_route: ModelRoute, upstream: FakeUpstream
) -> None:
    route = usageless_route
    request_id = new_request_id()
    body = {"model": route.public_id, "messages": HELLO, "stream": True}

    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**body, extra_headers={"x-request-id": request_id})
    )

    [sent] = upstream.received(route.upstream_model)
    assert "stream_options" not in sent.body
    assert text == ANSWER
    [row] = ledger_rows([request_id])
    assert_belongs_to(row, key, route)
    prompt = chat_prompt_tokens(body, route)
    completion = tokens.count_text(ANSWER, model=route.upstream_model)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (prompt, completion, True)
    assert row.cost == cost(prompt, completion)
    assert (row.status, row.error_type, row.streamed) == (200, "", True)
