"""The response cache on /v1/embeddings, end to end: a real server, the official SDK, a fake upstream that counts.

Each test makes its own embeddings model on the session's fake upstream and a
cache policy for it; what the fake received tells a hit (no call) from a miss.
A hit must be the very bytes the miss sent, base64 or floats.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.utils import timezone
from openai import OpenAI
from openai._legacy_response import LegacyAPIResponse
from openai.types import CreateEmbeddingResponse

from billing.models import DeploymentPrice, RateLimit
from caching.services import cache_policy_set
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.behaviours import Fail, Reply, Steps
from tests.fakes.openai_upstream import FakeUpstream, embedding
from tests.integration.test_ledger import ledger_rows, priced
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

TEXTS = ["The food was delicious and the waiter was kind.", "Portico keeps what it was told."]
# USD per million tokens the provider charges (the tenant's price is test_ledger's: 2.5 in).
PROVIDER_PRICE = Decimal("1")

# What the SDK's `with_raw_response` gives: the answer's bytes and headers, and `parse()` for the typed answer.
RawEmbeddings = LegacyAPIResponse[CreateEmbeddingResponse]


@pytest.fixture
def route(upstream_embedding_route: ModelRoute) -> ModelRoute:
    priced(upstream_embedding_route)
    DeploymentPrice.objects.create(
        deployment=upstream_embedding_route,
        effective_from=timezone.now() - timedelta(hours=1),
        input_per_million=PROVIDER_PRICE,
        output_per_million=PROVIDER_PRICE,
    )
    return upstream_embedding_route


def calls(upstream: FakeUpstream, route: ModelRoute) -> int:
    return len(upstream.received(route.upstream_model))


def embed(client: OpenAI, route: ModelRoute, **options: object) -> RawEmbeddings:
    return client.embeddings.with_raw_response.create(model=route.public_id, input=TEXTS, **options)  # type: ignore[arg-type]


def unpacked(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_the_second_identical_request_is_a_hit_with_the_same_bytes(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model, ttl_seconds=300)
    settle()

    first = embed(client, route)  # the SDK asks for base64 unless told otherwise
    second = embed(client, route, user="someone-else")  # `user` cannot change the vectors

    assert (first.headers["x-portico-cache"], second.headers["x-portico-cache"]) == ("miss", "hit")
    assert calls(upstream, route) == 1
    assert upstream.received(route.upstream_model)[0].body["encoding_format"] == "base64"
    assert second.content == first.content
    assert all(isinstance(item["embedding"], str) for item in second.http_response.json()["data"])
    hit = second.parse()
    assert [item.embedding for item in hit.data] == [embedding(text) for text in TEXTS]
    assert hit.usage == first.parse().usage
    assert hit.model == route.public_id
    assert second.headers["x-portico-attempts"] == "0"


def test_floats_come_back_byte_for_byte_and_are_not_served_to_a_base64_request(
    portico: PorticoServer, client: OpenAI, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    settle()

    first = embed(client, route, encoding_format="float")
    second = embed(client, route, encoding_format="float")
    # A client that names no format gets floats too: the same answer, so the same entry.
    unnamed = portico.http.post(
        "/v1/embeddings",
        json={"model": route.public_id, "input": TEXTS},
        headers={"Authorization": f"Bearer {key.plaintext}"},
    )
    packed = embed(client, route, encoding_format="base64")

    assert [answer.headers["x-portico-cache"] for answer in (first, second, unnamed, packed)] == [
        "miss",
        "hit",
        "hit",
        "miss",
    ]
    assert calls(upstream, route) == 2
    assert second.content == unnamed.content == first.content
    assert [item["embedding"] for item in unnamed.json()["data"]] == [embedding(text) for text in TEXTS]
    assert [unpacked(item["embedding"]) for item in packed.http_response.json()["data"]] == [
        embedding(text) for text in TEXTS
    ]


def test_a_change_in_input_or_dimensions_misses(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    settle()

    answers = [
        embed(client, route),
        client.embeddings.with_raw_response.create(model=route.public_id, input=TEXTS[:1]),
        embed(client, route, dimensions=8),
    ]

    assert [answer.headers["x-portico-cache"] for answer in answers] == ["miss", "miss", "miss"]
    assert calls(upstream, route) == 3
    assert [len(item.embedding) for item in answers[2].parse().data] == [8, 8]


def test_without_a_policy_nothing_is_cached(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    settle()

    answers = [embed(client, route), embed(client, route)]

    assert [answer.headers.get("x-portico-cache") for answer in answers] == [None, None]
    assert calls(upstream, route) == 2


def test_another_tenant_never_gets_a_stored_answer(
    portico: PorticoServer, client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    cache_policy_set(model=route.model)
    outsider_key = make_key(tenant=make_tenant(slug=f"tenant-{tag}-b"), name="outsider")
    settle()

    embed(client, route)
    with portico.client(outsider_key.plaintext) as outsider:
        theirs = embed(outsider, route)
        again = embed(outsider, route)

    assert (theirs.headers["x-portico-cache"], again.headers["x-portico-cache"]) == ("miss", "hit")
    assert calls(upstream, route) == 2


def test_another_key_of_the_same_tenant_shares_its_answers(
    portico: PorticoServer, client: OpenAI, key: IssuedKey, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    teammate_key = make_key(tenant=key.api_key.tenant, name="teammate")
    settle()

    first = embed(client, route)
    with portico.client(teammate_key.plaintext) as teammate:
        theirs = embed(teammate, route)

    assert (first.headers["x-portico-cache"], theirs.headers["x-portico-cache"]) == ("miss", "hit")
    assert theirs.content == first.content
    assert calls(upstream, route) == 1


@pytest.mark.parametrize("directive", ["no-cache", "no-store"])
def test_the_clients_cache_control_bypasses_the_cache(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle, directive: str
) -> None:
    cache_policy_set(model=route.model)
    settle()
    embed(client, route)

    bypassed = embed(client, route, extra_headers={"Cache-Control": directive})
    after = embed(client, route)

    assert bypassed.headers["x-portico-cache"] == "bypass"
    assert after.headers["x-portico-cache"] == "hit"  # no-cache refreshed the entry, no-store left it
    assert after.content == bypassed.content
    assert calls(upstream, route) == 2


def test_a_failed_answer_is_not_stored(
    client: OpenAI, route: ModelRoute, upstream: FakeUpstream, settle: Settle
) -> None:
    upstream.script(route.upstream_model, Steps(Fail(400, "The fake refused these inputs."), Reply()))
    cache_policy_set(model=route.model)
    settle()

    with pytest.raises(openai.BadRequestError):
        embed(client, route)
    answers = [embed(client, route), embed(client, route)]

    assert [answer.headers["x-portico-cache"] for answer in answers] == ["miss", "hit"]
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

    first = embed(client, route, extra_headers={"x-request-id": request_ids[0]})
    second = embed(client, route, extra_headers={"x-request-id": request_ids[1]})

    miss, hit = ledger_rows(request_ids)  # in the order they were made
    assert (miss.client_request_id, hit.client_request_id) == tuple(request_ids)
    assert (miss.operation, hit.operation) == ("embeddings", "embeddings")
    assert (miss.attempts, miss.deployment_id) == (1, route.pk)
    assert miss.provider_cost > 0
    assert (hit.attempts, hit.deployment_id, hit.deployment, hit.status) == (0, None, "", 200)
    assert hit.upstream_id == f"cache:{miss.request_id}"
    assert hit.prompt_tokens == miss.prompt_tokens == first.parse().usage.prompt_tokens > 0
    assert (hit.completion_tokens, hit.tokens_estimated) == (miss.completion_tokens, False)
    assert hit.provider_cost == 0
    assert miss.cost > 0
    assert hit.cost == (miss.cost * share).quantize(Decimal("1E-10"))
    assert Decimal(second.headers["x-portico-cost"]) == hit.cost
    assert hit.tenant_id == key.api_key.tenant_id


def test_a_hit_counts_against_the_keys_rate_limit(
    client: OpenAI, route: ModelRoute, key: IssuedKey, upstream: FakeUpstream, settle: Settle
) -> None:
    cache_policy_set(model=route.model)
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=2)
    settle()

    assert [embed(client, route).headers["x-portico-cache"] for _ in range(2)] == ["miss", "hit"]
    with pytest.raises(openai.RateLimitError):
        embed(client, route)
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
        answers = [embed(client, route), embed(client, route)]

    assert [answer.headers["x-portico-cache"] for answer in answers] == ["miss", "hit"]
    assert answers[1].content == answers[0].content
    assert calls(upstream, route) == 1
