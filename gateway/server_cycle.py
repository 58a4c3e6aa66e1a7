"""What Portico's server protocol adds to each of uvicorn's request cycles: one write per whole answer, and
a disconnect that cancels the request's task directly.

uvicorn writes an answer's status line and headers when the app sends
`http.response.start`, and its body when the app sends the body: two system
calls for an answer that exists whole before either is sent. A start message
carrying `BODY_FOLLOWS` (the fast path's whole answers) is held until its body
arrives, and both go out in one write. Any other start is written as before,
so a stream's headers still leave at once.

The fast path must stop serving a request whose client has gone (which
closes its upstream call too). Waiting on `receive()` for `http.disconnect`
takes a task per request; a `DisconnectWatch` in the scope's extensions is
fired by the protocol when the connection is lost instead. A server without
it (another ASGI server, the test client) gets the task.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

# A key of a start message: its body follows at once.
BODY_FOLLOWS = "portico.body_follows"
# scope["extensions"][DISCONNECT_WATCH]["watch"] is the request's DisconnectWatch (an extension's value is a dict).
DISCONNECT_WATCH = "portico.disconnect_watch"


class DisconnectWatch:
    """The task serving a request, cancelled when its connection is lost while it runs."""

    __slots__ = ("gone", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.gone = False  # the connection was lost while `task` was watched: its cancellation is ours

    def fire(self) -> None:
        task = self.task
        if task is not None and not task.done():
            self.gone = True
            task.cancel()


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's cycle, writing a held start message and its body together."""

    held: Any = None  # the start message held back
    watch: DisconnectWatch | None = None

    async def send(self, message: Any) -> None:
        held = self.held
        if message["type"] == "http.response.start" and not self.response_started:
            # A start while one is held replaces it: nothing was written, as when uvicorn answers a failed app.
            if message.get(BODY_FOLLOWS):
                self.held = message
                return
            self.held = None
            await super().send(message)
            return
        if held is None:
            await super().send(message)
            return
        self.held = None
        transport = self.transport
        gathered = _Gathered(transport)
        self.transport = gathered  # type: ignore[assignment]  # it stands in for the transport's writes
        try:
            await super().send(held)
            await super().send(message)
        finally:
            self.transport = transport
            gathered.release()


class _Gathered:
    """A transport that keeps what is written (and a close) until `release`; anything else goes through."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._parts: list[bytes] = []
        self._close = False

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def close(self) -> None:
        self._close = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def release(self) -> None:
        if self._parts:
            self._transport.write(b"".join(self._parts))
        if self._close:
            self._transport.close()
