"""At its open files limit a server still answers every request, or refuses it cleanly, and its ledger loses nothing.

The server runs with RLIMIT_NOFILE at 256, which bounds it to
`connection_bound(256)` client connections. The test holds idle connections
open to push it past that bound, then sends streamed chat requests (which
hold an upstream socket while they are served) through the fake upstream:
each is answered 200 or refused before admission with a 503 in OpenAI's
shape, never a 500 or a reset. Every request answered 200 has exactly one
ledger row, and a refused one has none.
"""

from __future__ import annotations

import os
import resource
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from billing.models import UsageRecord
from gateway.server import connection_bound
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.integration.test_ledger import SPOOL, assert_once_each, ledger_rows, spooled
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

NOFILE = 256
BOUND = connection_bound(NOFILE)
WAVE = 24  # requests sent at once in each phase
BUSY = {
    "error": {
        "message": "The server is at its connection limit; retry shortly.",
        "type": "server_error",
        "param": None,
        "code": "server_busy",
    }
}


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    retry_after: str | None


SERVED = Outcome(200, "one two three four five six", None)
REFUSED = Outcome(503, BUSY, "1")


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture(scope="module")
def constrained(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    # Idle connections must outlive the test's phases, so they are not closed for idling.
    env = {**server_env, "PORTICO_KEEPALIVE_TIMEOUT": "60"}
    log_path = tmp_path_factory.mktemp("constrained") / "server.log"
    server = PorticoServer(env=env, log_path=log_path, preexec_fn=_low_descriptor_limit)
    server.start()
    yield server
    server.stop()


def open_descriptors(server: PorticoServer) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


def hold_idle(server: PorticoServer, stack: ExitStack, count: int) -> list[socket.socket]:
    return [stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=10)) for _ in range(count)]


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def stream_chat(server: PorticoServer, key: IssuedKey, route: ModelRoute, request_id: str) -> Outcome:
    """How a streamed chat request ended: 200 once its stream is read to the end, or the error's status and body."""
    with server.client(key.plaintext) as client:
        try:
            stream = client.chat.completions.create(
                model=route.public_id,
                messages=[{"role": "user", "content": "Say hello."}],
                stream=True,
                extra_headers={"x-request-id": request_id},
            )
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.APIStatusError as exc:
            return Outcome(exc.status_code, exc.response.json(), exc.response.headers.get("retry-after"))
    return Outcome(200, text, None)


def wave(server: PorticoServer, key: IssuedKey, route: ModelRoute) -> dict[str, int]:
    """Send WAVE requests at once; each must be served whole or refused before admission, nothing else."""
    ids = [f"client-{uuid.uuid4()}" for _ in range(WAVE)]
    with ThreadPoolExecutor(max_workers=WAVE) as pool:
        outcomes = list(pool.map(lambda request_id: stream_chat(server, key, route, request_id), ids))
    for outcome in outcomes:
        assert outcome in (SERVED, REFUSED), outcome
    return {request_id: outcome.status for request_id, outcome in zip(ids, outcomes, strict=True)}


def test_it_answers_or_cleanly_refuses_every_request_at_its_descriptor_limit(
    constrained: PorticoServer, settle: Settle, key: IssuedKey, upstream: FakeUpstream, upstream_route: ModelRoute
) -> None:
    # Several events apart, so each request holds its upstream socket while others arrive.
    upstream.script(upstream_route.upstream_model, Reply("one two three four five six", delay=0.02))
    settle(constrained)
    outcomes: dict[str, int] = {}
    with ExitStack() as stack:
        held = hold_idle(constrained, stack, BOUND)
        # Past the bound, more connections than the server has descriptors: each is refused at once, and closed.
        for _ in range(NOFILE):
            with socket.create_connection(("127.0.0.1", constrained.port), timeout=10) as sock:
                assert read_to_close(sock).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        over = wave(constrained, key, upstream_route)
        assert set(over.values()) == {503}
        outcomes |= over
        # Room for a few of the wave: some are served, the rest refused, none fails otherwise.
        for sock in held[BOUND - 8 :]:
            sock.close()
        outcomes |= wave(constrained, key, upstream_route)
    outcomes |= wave(constrained, key, upstream_route)

    served = [request_id for request_id, status in outcomes.items() if status == 200]
    refused = [request_id for request_id, status in outcomes.items() if status == 503]
    assert len(served) >= WAVE + 1, "once the idle connections are gone every request is served"
    assert_once_each(ledger_rows(served), served)
    assert not UsageRecord.objects.filter(client_request_id__in=refused).exists()
    assert not spooled(SPOOL, refused)
    assert open_descriptors(constrained) < NOFILE
