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
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, RequestResponseCycle

# A key of a start message: its body follows at once.
BODY_FOLLOWS = "portico.body_follows"
# scope["extensions"][DISCONNECT_WATCH]["watch"] is the request's DisconnectWatch (an extension's value is a dict).
DISCONNECT_WATCH = "portico.disconnect_watch"


def _allowed_by(refused: re.Pattern[bytes]) -> bytes:
    """Every byte that uvicorn's single-character class `refused` does not match."""
    return bytes(byte for byte in range(256) if not refused.match(bytes((byte,))))


# uvicorn's checks of header names and values, as the bytes they let through. `joined.translate(None, OK)`
# deletes those and leaves what uvicorn would refuse: one table lookup per byte, where its regular-expression
# search of the same bytes costs some twenty instructions per byte (1-2 % of a limited key's request).
_NAME_OK = _allowed_by(HEADER_RE)
_VALUE_OK = _allowed_by(HEADER_VALUE_RE)


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
        if self._write_whole(held, message):
            return
        transport = self.transport
        gathered = _Gathered(transport)
        self.transport = gathered  # type: ignore[assignment]  # it stands in for the transport's writes
        try:
            await super().send(held)
            await super().send(message)
        finally:
            self.transport = transport
            gathered.release()

    def _write_whole(self, start: Any, message: Any) -> bool:
        """Write a held start and its whole body as one answer, if it is the plain case; else False.

        uvicorn frames a start header by header, two regular-expression searches each; a dozen headers
        cost more than the rest of the framing. Here the names and the values are each checked in one
        search, and anything unusual (a HEAD request, a paused or gone client, a `connection` header, a
        length that is not the body's) is left to uvicorn's own path, which also raises for a bad header.
        """
        body = message.get("body", b"")
        if (
            message["type"] != "http.response.body"
            or message.get("more_body", False)
            or self.disconnected
            or self.flow.write_paused
            or self.scope["method"] == "HEAD"
        ):
            return False
        headers = self.default_headers + list(start.get("headers", ()))
        names = [name.lower() for name, _ in headers]
        if b"connection" in names or names.count(b"content-length") != 1:
            return False
        if headers[names.index(b"content-length")][1] != b"%d" % len(body):
            return False
        if b"-".join(names).translate(None, _NAME_OK) or b"\t".join([value for _, value in headers]).translate(
            None, _VALUE_OK
        ):
            return False
        content = [STATUS_LINE[start["status"]]]
        for name, (_, value) in zip(names, headers, strict=True):
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.response_started = True
        self.waiting_for_100_continue = False
        self.chunked_encoding = False
        self.expected_content_length = 0
        self.transport.write(b"".join(content))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True


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
