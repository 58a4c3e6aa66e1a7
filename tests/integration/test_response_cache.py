"""The response cache end to end: a real server, the official SDK, a fake upstream that counts its calls.

Each test makes its own public model on the session's fake upstream and a
cache policy for it; what the fake received tells a hit (no call) from a miss.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.utils import timezone
from openai import OpenAI

from billing.models import DeploymentPrice, RateLimit
from caching.services import cache_policy_set
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_ledger import ledger_rows, priced
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ANSWER = "Cached words, five six seven."
HELLO = [{"role": "user", "content": "Say hello."}]
# USD per million tokens the provider charges (the tenant's price is test_ledger's: 2.5 in, 10 out).
PROVIDER_PRICE = (Decimal("1"), Decimal("4"))


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply(ANSWER))
    priced(upstream_route)
    DeploymentPrice.objects.create(
        deployment=upstream_route,
        effective_from=timezone.now() - timedelta(hours=1),
        input_per_million=PROVIDER_PRICE[0],
        output_per_million=PROVIDER_PRICE[1],
    )
    return upstream_route


def calls(upstream: FakeUpstream, route: ModelRoute) -> int:
    return len(upstream.received(route.upstream_model))


def ask(client: OpenAI, route: ModelRoute, **options: object) -> openai.APIResponse:  # type: ignore[type-arg]
    return client.chat.completions.with_raw_response.create(model=route.public_id, messages=HELLO, **options)  # type: ignore[arg-type]


def test_the_second_identical_request_is_a_hit(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model, ttl_seconds=300)
    settle()

    first = ask(client, route, temperature=0.9)
    second = ask(client, route, temperature=0.9, user="someone-else")  # `user` cannot change the answer

    assert (first.headers["x-portico-cache"], second.headers["x-portico-cache"]) == ("miss", "hit")
    assert calls(upstream, route) == 1
    miss, hit = first.parse(), second.parse()
    assert hit.choices[0].message.content == miss.choices[0].message.content == ANSWER
    assert hit.id != miss.id
    assert hit.usage == miss.usage
    assert second.headers["x-portico-attempts"] == "0"


def test_a_different_request_misses(client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle) -> None:
    cache_policy_set(model=route.model)
    settle()

    first = ask(client, route, temperature=0.9)
    other = ask(client, route, temperature=0.8)

    assert (first.headers["x-portico-cache"], other.headers["x-portico-cache"]) == ("miss", "miss")
    assert calls(upstream, route) == 2


def test_without_a_policy_nothing_is_cached(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    settle()

    answers = [ask(client, route), ask(client, route)]

    assert [answer.headers.get("x-portico-cache") for answer in answers] == [None, None]
    assert calls(upstream, route) == 2


@pytest.mark.parametrize("include_usage", [False, True], ids=["no usage", "usage asked for"])
def test_a_stored_answer_is_streamed_to_a_request_that_asks_for_a_stream(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle, include_usage: bool
) -> None:
    cache_policy_set(model=route.model)
    settle()
    miss = ask(client, route).parse()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, stream=True, **options
    )
    chunks = list(raw.parse())

    assert raw.headers["x-portico-cache"] == "hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert calls(upstream, route) == 1
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ANSWER
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert {chunk.id for chunk in chunks} != {miss.id}
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert usage == ([miss.usage] if include_usage else [])


def test_a_streamed_miss_is_stored_once_it_has_ended(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    settle()
    request_ids = [f"client-{uuid.uuid4()}" for _ in range(2)]

    raw = client.chat.completions.with_raw_response.create(
        model=route.public_id, messages=HELLO, stream=True, extra_headers={"x-request-id": request_ids[0]}
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    whole = ask(client, route, extra_headers={"x-request-id": request_ids[1]})

    assert (raw.headers["x-portico-cache"], whole.headers["x-portico-cache"]) == ("miss", "hit")
    assert whole.parse().choices[0].message.content == streamed == ANSWER
    assert calls(upstream, route) == 1
    # The client asked for no usage chunk: the stored answer has the call's usage all the same.
    miss, hit = ledger_rows(request_ids)
    assert (hit.prompt_tokens, hit.completion_tokens, hit.tokens_estimated) == (
        miss.prompt_tokens,
        miss.completion_tokens,
        False,
    )
    assert whole.parse().usage is not None


def test_another_tenant_never_gets_a_stored_answer(
    portico: PorticoServer, client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    cache_policy_set(model=route.model)
    outsider_key = make_key(tenant=make_tenant(slug=f"tenant-{tag}-b"), name="outsider")
    settle()

    ask(client, route)
    with portico.client(outsider_key.plaintext) as outsider:
        theirs = ask(outsider, route)
        again = ask(outsider, route)

    assert (theirs.headers["x-portico-cache"], again.headers["x-portico-cache"]) == ("miss", "hit")
    assert calls(upstream, route) == 2


@pytest.mark.parametrize("directive", ["no-cache", "no-store"])
def test_the_clients_cache_control_bypasses_the_cache(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle, directive: str
) -> None:
    cache_policy_set(model=route.model)
    settle()
    ask(client, route)

    bypassed = ask(client, route, extra_headers={"Cache-Control": directive})
    after = ask(client, route)

    assert bypassed.headers["x-portico-cache"] == "bypass"
    assert after.headers["x-portico-cache"] == "hit"  # no-cache refreshed the entry, no-store left it
    assert calls(upstream, route) == 2


def test_a_stored_answer_is_forgotten_after_its_ttl(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model, ttl_seconds=1)
    settle()

    ask(client, route)
    assert ask(client, route).headers["x-portico-cache"] == "hit"
    time.sleep(1.1)  # the store's own clock (Redis's) expires it: there is no clock of ours to move
    expired = ask(client, route)

    assert expired.headers["x-portico-cache"] == "miss"
    assert calls(upstream, route) == 2


@pytest.mark.parametrize(
    ("charge", "percent", "share"),
    [("full", None, Decimal(1)), ("percent", 40, Decimal("0.4")), ("free", None, Decimal(0))],
)
def test_a_hit_is_recorded_at_the_policys_price_with_no_provider_cost(
    client: OpenAI,
    route: ModelRoute,
    key: IssuedKey,
    settle: Settle,
    charge: str,
    percent: int | None,
    share: Decimal,
) -> None:
    cache_policy_set(model=route.model, charge=charge, charge_percent=percent)
    settle()
    request_ids = [f"client-{uuid.uuid4()}" for _ in range(2)]

    first = ask(client, route, extra_headers={"x-request-id": request_ids[0]})
    second = ask(client, route, extra_headers={"x-request-id": request_ids[1]})

    miss, hit = ledger_rows(request_ids)  # in the order they were made
    assert (miss.client_request_id, hit.client_request_id) == tuple(request_ids)
    assert (miss.attempts, miss.deployment_id, miss.upstream_id[:6]) == (1, route.pk, "")
    assert miss.provider_cost > 0
    assert (hit.attempts, hit.deployment_id, hit.deployment, hit.status) == (0, None, "", 200)
    assert hit.upstream_id == f"cache:{first.parse().id}"
    assert (hit.prompt_tokens, hit.completion_tokens) == (miss.prompt_tokens, miss.completion_tokens)
    assert hit.provider_cost == 0
    assert hit.cost == (miss.cost * share).quantize(Decimal("1E-10"))
    assert Decimal(second.headers["x-portico-cost"]) == hit.cost
    assert hit.tenant_id == key.api_key.tenant_id


def test_a_hit_counts_against_the_keys_rate_limit(
    client: OpenAI, route: ModelRoute, key: IssuedKey, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=2)
    settle()

    assert [ask(client, route).headers["x-portico-cache"] for _ in range(2)] == ["miss", "hit"]
    with pytest.raises(openai.RateLimitError):
        ask(client, route)
    assert calls(upstream, route) == 1


def test_legacy_completions_are_cached_too(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    settle()

    first = client.completions.with_raw_response.create(model=route.public_id, prompt="Once upon a time")
    second = client.completions.with_raw_response.create(model=route.public_id, prompt="Once upon a time")
    streamed = list(client.completions.create(model=route.public_id, prompt="Once upon a time", stream=True))

    assert (first.headers["x-portico-cache"], second.headers["x-portico-cache"]) == ("miss", "hit")
    assert second.parse().choices[0].text == first.parse().choices[0].text
    assert "".join(choice.text for chunk in streamed for choice in chunk.choices) == first.parse().choices[0].text
    assert calls(upstream, route) == 1


@pytest.fixture(scope="module")
def embedded_portico(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    """A server of the embedded default: no Redis, so each process keeps its answers in its own memory."""
    server = PorticoServer(
        env={**server_env, "REDIS_URL": ""}, log_path=tmp_path_factory.mktemp("portico-no-redis") / "server.log"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_without_redis_answers_are_kept_in_the_process(
    embedded_portico: PorticoServer, route: ModelRoute, key: IssuedKey, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    settle(embedded_portico)

    with embedded_portico.client(key.plaintext) as client:
        answers = [ask(client, route), ask(client, route, stream=True)]

    assert [answer.headers["x-portico-cache"] for answer in answers] == ["miss", "hit"]
    assert calls(upstream, route) == 1
