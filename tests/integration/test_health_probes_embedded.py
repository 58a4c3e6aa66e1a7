"""Health checks without Redis: the embedded schedule's checks move the breakers of the server that runs them.

The server has no Redis and no broker, and keeps the schedule itself, with only
the health check on, every second. Its breakers live in the process
(gateway.breakers.local): a failing check opens one, the server's routing
then skips that deployment, and a passing check after the cool-down closes it.
What the server's breakers hold is read from its /health report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from billing.tests.factories import make_user, token_headers
from gateway.breakers import CLOSED, OPEN
from gateway.models import BreakerTransition
from providers.models import Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import make_key
from tests.fakes.behaviours import Reply
from tests.fakes.openai_upstream import FakeUpstream
from tests.integration.test_embedded_schedule import QUIET
from tests.integration.test_health_probes import probe_rows, refused_url  # noqa: F401 - a fixture
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("probe_rows")]

DEADLINE = 20.0
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server_without_redis(server_env: dict[str, str], tmp_path: Path) -> Iterator[PorticoServer]:
    env = {
        **server_env,
        **QUIET,
        "REDIS_URL": "",
        "PORTICO_CELERY_BROKER_URL": "embedded",
        "PORTICO_INPROCESS_SCHEDULER": "true",
        "PORTICO_DATA_DIR": str(tmp_path),
        "PORTICO_HEALTH_CHECK_INTERVAL": "1",
        "PORTICO_HEALTH_PROBE_FAILURES_TO_OPEN": "1",
        "PORTICO_BREAKER_COOLDOWN": "2",
    }
    server = PorticoServer(env=env, log_path=tmp_path / "server.log")
    server.start()
    yield server
    server.stop()


def until(condition: Callable[[], object], what: str, server: PorticoServer) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}\n{server.log()}"
        time.sleep(0.1)


def test_without_redis_checks_open_the_servers_own_breaker_and_close_it_after_the_cooldown(
    server_without_redis: PorticoServer, upstream: FakeUpstream, settle: Settle, tag: str
) -> None:
    server = server_without_redis
    upstream.script(f"up-{tag}", Reply("served by the healthy deployment"))
    upstream.script(f"back-{tag}", Reply("served by the deployment that came back"))
    down = make_provider(kind="openai", name=f"down-{tag}", base_url=refused_url())
    up = make_provider(kind="openai", name=f"up-{tag}", base_url=upstream.base_url)
    failing = make_route(provider=down, public_id=f"gpt-{tag}", upstream_model=f"back-{tag}", priority=0)
    healthy = make_route(provider=up, public_id=f"gpt-{tag}", upstream_model=f"up-{tag}", priority=1)
    operator = token_headers(make_user(username=f"op-{tag}", staff=True))
    key = make_key(name="caller")
    settle(server)

    def states() -> dict[int, str]:
        report = server.http.get("/health", headers=operator).json()
        return {row["id"]: row["breaker"]["state"] for p in report["providers"] for row in p["deployments"]}

    def chat() -> httpx.Response:
        return server.http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json={"model": f"gpt-{tag}", "messages": HI},
        )

    until(lambda: states().get(failing.pk) == OPEN, "a failing check opening the breaker", server)
    assert states()[healthy.pk] == CLOSED
    # The routing skips the deployment whose breaker is open: one attempt, on the healthy one.
    answer = chat()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-portico-attempts"] == "1"
    assert answer.json()["choices"][0]["message"]["content"] == "served by the healthy deployment"

    Provider.objects.filter(pk=down.pk).update(base_url=upstream.base_url)  # its checks pass from now on
    settle(server)
    until(lambda: states().get(failing.pk) == CLOSED, "a passing check after the cooldown closing it", server)

    answer = chat()
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "served by the deployment that came back"

    def transitions() -> list[tuple[str, str]]:
        rows = BreakerTransition.objects.filter(route_id=failing.pk).order_by("at", "id")
        return list(rows.values_list("from_state", "to_state"))

    # The server's history, written by its own thread a moment after each change.
    until(lambda: transitions()[-2:] == [("open", "half_open"), ("half_open", "closed")], "the history", server)
    assert transitions()[0] == ("closed", "open")
