"""A limiter script that fails on one tenant's keys, on the real Redis, under a serving Portico.

Redis answers, with an error about that request: that request alone gets a
500, with nothing of Redis's reply in it; the limiter state stays as it was,
and every other tenant keeps being counted in Redis, shared by every process,
rather than by a stand-in in each.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import openai
import pytest
from django.conf import settings
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from redis import Redis

from billing.models import Budget, RateLimit
from billing.periods import period_bounds
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.conftest import SERVER_REDIS_PREFIX
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, limiter"}]


def ask(client: OpenAI, route: ModelRoute) -> ChatCompletion:
    return client.chat.completions.create(model=route.public_id, messages=HELLO)


@pytest.fixture
def redis() -> Iterator[Redis]:
    with Redis.from_url(settings.REDIS_URL) as client:
        yield client


@pytest.fixture
def broken_counter(key: IssuedKey, redis: Redis) -> Iterator[str]:
    """The key's tenant has a budget whose counter in Redis holds a hash, which no script can count on."""
    tenant = key.api_key.tenant
    Budget.objects.create(tenant=tenant, period="monthly", amount="100")
    RateLimit.objects.create(api_key=key.api_key, max_concurrent=1, requests_per_minute=10)
    period = period_bounds("monthly", datetime.now(UTC))[0]
    counter = f"{SERVER_REDIS_PREFIX}:budget:tenant:{tenant.pk}:{period}"
    redis.hset(counter, "not", "a counter")
    yield counter
    redis.delete(counter)


@pytest.fixture
def neighbour(tag: str) -> IssuedKey:
    neighbour = make_key(tenant=make_tenant(slug=f"neighbour-{tag}"), name="neighbour")
    RateLimit.objects.create(api_key=neighbour.api_key, requests_per_minute=2)
    return neighbour


def test_a_script_error_is_a_500_for_that_request_alone(
    portico: PorticoServer,
    key: IssuedKey,
    neighbour: IssuedKey,
    echo_route: ModelRoute,
    broken_counter: str,
    redis: Redis,
    settle: Settle,
) -> None:
    settle()
    with portico.client(key.plaintext) as client, pytest.raises(openai.InternalServerError) as failed:
        ask(client, echo_route)

    with portico.client(neighbour.plaintext) as client:
        served = [ask(client, echo_route) for _ in range(2)]
        with pytest.raises(openai.RateLimitError):
            ask(client, echo_route)

    assert failed.value.status_code == 500
    assert failed.value.body == {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert len(served) == 2
    assert redis.exists(f"{SERVER_REDIS_PREFIX}:rl:key:{neighbour.api_key.pk}:req")
    log = portico.log()
    assert "does not answer the rate limiter" not in log
    assert "acquire script failed" in log
    assert "Traceback" not in log


def test_the_failed_request_left_no_reservation_behind(
    portico: PorticoServer, key: IssuedKey, echo_route: ModelRoute, broken_counter: str, redis: Redis, settle: Settle
) -> None:
    settle()
    with portico.client(key.plaintext) as client:
        with pytest.raises(openai.InternalServerError):
            ask(client, echo_route)
        concurrency = f"{SERVER_REDIS_PREFIX}:rl:key:{key.api_key.pk}"
        assert redis.zcard(f"{concurrency}:cc") == 0
        assert not redis.exists(f"{concurrency}:req")
        assert redis.hgetall(broken_counter) == {b"not": b"a counter"}

        redis.delete(broken_counter)  # the counter is re-seeded from the ledger on the next request
        answer = ask(client, echo_route)

    assert answer.choices[0].message.content == "Hello, limiter"
