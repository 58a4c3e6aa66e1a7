"""A webhook receiver on 127.0.0.1: it keeps every POST it gets and answers with the status it is told to.

Tests of any app take the `receiver` fixture by importing it from here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.fakes.loopback import LoopbackServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class WebhookReceiver(LoopbackServer):
    name = "webhook-receiver"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._statuses = [200]
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/portico"

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order; the last one from then on."""
        with self._lock:
            self._statuses = list(statuses)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        assert self._socket is not None
        await web.SockSite(self._runner, self._socket).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            headers = {name.lower(): value for name, value in request.headers.items()}
            self._received.append(Received(request.path, headers, body))
            status = self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]
        return web.Response(status=status, text="ok" if status < 400 else "it broke here")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()
