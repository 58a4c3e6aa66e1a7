"""Redis going away under a serving Portico, and coming back, with each PORTICO_LIMITS_ON_REDIS_ERROR.

Each test starts a Portico of its own whose REDIS_URL is a private
redis-server, stopped and restarted here. That server's snapshot refresher
uses the same Redis, so it cannot hear the session's change messages: it polls
the database every 0.2 s instead, and keeps serving from its last snapshot
while Redis is down. A restarted Redis has forgotten every bucket (it keeps
nothing on disk), which tells a request counted there from one counted in the
process's own stand-in limiter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from billing.models import RateLimit
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.redis_server import RedisServer
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Is Redis there?"}]
# The limiter tries Redis again a second after it last failed; a restart is noticed well within this.
BACK_WITHIN = 5.0

StartPortico = Callable[[str], PorticoServer]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_path=tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_portico(server_env: dict[str, str], redis_server: RedisServer, tmp_path: Path) -> Iterator[StartPortico]:
    """Start a Portico on the private Redis that handles Redis errors as told ("open" or "closed")."""
    started: list[PorticoServer] = []

    def start(on_redis_error: str) -> PorticoServer:
        env = {
            **server_env,
            "REDIS_URL": redis_server.url,
            "PORTICO_LIMITS_ON_REDIS_ERROR": on_redis_error,
            "PORTICO_SNAPSHOT_POLL": "0.2",
        }
        server = PorticoServer(env=env, log_path=tmp_path / f"portico-{on_redis_error}.log")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def route(upstream: FakeUpstream, upstream_route: ModelRoute) -> ModelRoute:
    upstream.script(upstream_route.upstream_model, Reply("Yes."))
    return upstream_route


@pytest.fixture
def outsider(committed_db: None, tag: str) -> IssuedKey:
    """A key of another tenant, with no limits: its requests never ask the limiter anything."""
    return make_key(tenant=make_tenant(slug=f"outsider-{tag}"), name="outsider")


def chat(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> httpx.Response:
    return server.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}"},
        json={"model": route.public_id, "messages": HELLO},
    )


def statuses(server: PorticoServer, key: IssuedKey, route: ModelRoute, count: int) -> list[int]:
    return [chat(server, key, route).status_code for _ in range(count)]


def first_pass(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> None:
    """Poll until a request passes again (Redis is retried a second after its last failure)."""
    deadline = time.monotonic() + BACK_WITHIN
    while chat(server, key, route).status_code != 200:
        assert time.monotonic() < deadline, "requests did not pass again after Redis came back"
        time.sleep(0.05)


def buckets_of(redis_server: RedisServer, key: IssuedKey) -> list[bytes]:
    client = redis_server.client()
    try:
        return list(client.scan_iter(match=f"*:rl:key:{key.api_key.pk}:req"))
    finally:
        client.close()


def test_failing_open_serves_on_per_process_limits_while_redis_is_down(
    start_portico: StartPortico,
    redis_server: RedisServer,
    key: IssuedKey,
    route: ModelRoute,
    settle: Settle,
) -> None:
    server = start_portico("open")
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=3)
    settle(server)
    assert statuses(server, key, route, 1) == [200]
    assert buckets_of(redis_server, key)

    redis_server.stop()
    # The process's own limiter, which has counted nothing yet, still holds the key to 3 a minute.
    assert statuses(server, key, route, 4) == [200, 200, 200, 429]
    assert "ERROR billing.limits.redis Redis does not answer the rate limiter" in server.log()
    assert "enforcing limits in each process alone" in server.log()

    redis_server.start()
    first_pass(server, key, route)
    # A fresh bucket in the restarted Redis, not the exhausted one in the process: Redis counts again.
    assert statuses(server, key, route, 3) == [200, 200, 429]
    assert buckets_of(redis_server, key)
    assert "Redis answers the rate limiter again" in server.log()


def test_failing_closed_refuses_limited_requests_while_redis_is_down(
    start_portico: StartPortico,
    redis_server: RedisServer,
    key: IssuedKey,
    outsider: IssuedKey,
    route: ModelRoute,
    settle: Settle,
) -> None:
    server = start_portico("closed")
    RateLimit.objects.create(api_key=key.api_key, requests_per_minute=1000)
    settle(server)
    assert statuses(server, key, route, 1) == [200]

    redis_server.stop()
    refused = [chat(server, key, route) for _ in range(3)]
    with server.client(key.plaintext) as client, pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model=route.public_id, messages=HELLO)

    for answer in refused:
        assert answer.status_code == 503
        assert answer.json() == {
            "error": {
                "message": "The rate limiter is unavailable; please retry shortly.",
                "type": "api_error",
                "param": None,
                "code": "limiter_unavailable",
            }
        }
    assert (unavailable.value.status_code, unavailable.value.code) == (503, "limiter_unavailable")
    assert "ERROR billing.limits.redis Redis does not answer the rate limiter" in server.log()
    assert "refusing every limited request" in server.log()
    # Only limited requests need the limiter; the snapshot still serves everyone else.
    assert statuses(server, outsider, route, 2) == [200, 200]

    redis_server.start()
    first_pass(server, key, route)
    assert statuses(server, key, route, 2) == [200, 200]
    assert "Redis answers the rate limiter again" in server.log()
