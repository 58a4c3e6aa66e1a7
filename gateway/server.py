"""The HTTP server Portico runs: uvicorn, with bounds on what a client may send before it is authenticated.

uvicorn's httptools protocol takes request headers of any size and number,
waits for them and for a body as long as the client likes, and accepts
connections until accept() fails for want of descriptors, at which point even
the upstream socket or the ledger spool of a request already admitted cannot
be opened. `BoundedProtocol` adds, per connection, what the server needs to
stay answerable:

    bound                          client sees                       setting
    request line + headers bytes   431 and the connection closed     PORTICO_MAX_HEADER_BYTES
    number of headers              431 and the connection closed     PORTICO_MAX_HEADERS
    first byte to end of headers   408 and the connection closed     PORTICO_HEADER_TIMEOUT
    end of headers to end of body  408 (the app sees a disconnect)   PORTICO_BODY_TIMEOUT
    idle connection                closed                            PORTICO_KEEPALIVE_TIMEOUT
    open client connections        503 at once (server_busy)         PORTICO_MAX_CONNECTIONS

The parser is never fed more header bytes than the cap, so a huge header costs
no more memory than the cap. Timers are armed only when a request straddles
reads, so a request that arrives in one read costs two additions and no timer.
"""

from __future__ import annotations

import argparse
import functools
import logging
import resource
import sys
from asyncio import TimerHandle, Transport
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.server_cycle import DISCONNECT_WATCH, DisconnectWatch, OneWriteCycle

logger = logging.getLogger(__name__)

APP = "gateway.asgi:application"
# Descriptors a process needs besides its connections: the listening socket, the event loop's own, Postgres
# connections of the worker threads, Redis, the ledger spool, log files, and what libraries open at start-up.
DESCRIPTOR_RESERVE = 64
# Each admitted client connection may hold its upstream socket and an upload's spool file too.
DESCRIPTORS_PER_CONNECTION = 3
# Seconds a client refused for want of connections is told to wait.
BUSY_RETRY_AFTER = 1
# Seconds a refused connection is read (and what it sends discarded) after its answer, before it is closed:
# closing with unread input would reset the connection, and the client could lose the answer.
LINGER = 0.5


@dataclass(frozen=True)
class Bounds:
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_connections: int
    # Whole HTTP answers, built once per process.
    too_large: bytes
    too_many: bytes
    header_timeout_answer: bytes
    body_timeout_answer: bytes
    busy: bytes


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # a container may forbid it: the current limit still holds
            logger.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft


def connection_bound(descriptors: int) -> int:
    """How many client connections a process with `descriptors` open files can serve without running out."""
    return max(1, (descriptors - DESCRIPTOR_RESERVE) // DESCRIPTORS_PER_CONNECTION)


def _answer(status: int, body: bytes, *extra: bytes) -> bytes:
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", *extra]
    head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(head) + body


@functools.cache
def bounds() -> Bounds:
    """This process's bounds, from the settings, read once by the first connection."""
    from django.conf import settings

    from gateway.errors import HeadersTooLarge, RequestTimeout, ServerBusy

    max_bytes, max_headers = settings.PORTICO_MAX_HEADER_BYTES, settings.PORTICO_MAX_HEADERS
    header_timeout, body_timeout = settings.PORTICO_HEADER_TIMEOUT, settings.PORTICO_BODY_TIMEOUT
    safe = connection_bound(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    max_connections = settings.PORTICO_MAX_CONNECTIONS or safe
    if max_connections > safe:
        logger.warning(
            "PORTICO_MAX_CONNECTIONS=%d is more than the open files limit allows (%d)", max_connections, safe
        )

    def refusal(error: HeadersTooLarge | RequestTimeout) -> bytes:
        return _answer(error.status, error.to_json())

    busy = ServerBusy("The server is at its connection limit; retry shortly.")
    return Bounds(
        max_header_bytes=max_bytes,
        max_headers=max_headers,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        too_large=refusal(HeadersTooLarge(f"The request line and headers are larger than {max_bytes} bytes.")),
        too_many=refusal(HeadersTooLarge(f"The request has more than {max_headers} headers.")),
        header_timeout_answer=refusal(
            RequestTimeout(f"The request headers did not arrive within {header_timeout:g} seconds.")
        ),
        body_timeout_answer=refusal(
            RequestTimeout(f"The request body did not arrive within {body_timeout:g} seconds.")
        ),
        busy=_answer(busy.status, busy.to_json(), b"retry-after: %d\r\n" % BUSY_RETRY_AFTER),
    )


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded header size and count, header and body time, and connections."""

    admitted = 0  # this process's client connections within the bound (a process has one event loop)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounds = bounds()
        self._header_bytes = 0  # bytes fed to the parser since the last request's headers ended
        self._header_count = 0
        self._refusal: bytes | None = None  # set by a parser callback that stopped the parser on a bound
        self._admitted = False
        self._discarding = False  # answered and closing: whatever else arrives is dropped
        self._reading_headers = False
        self._in_body = False
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._idle_since: float | None = None  # when the last answer ended, while no request is under way

    # --- connections ---

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if BoundedProtocol.admitted >= self._bounds.max_connections:
            # Refused before a byte is read and closed at once: a flood of connections must not pin descriptors.
            self._discarding = True
            self.transport.write(self._bounds.busy)
            self.transport.close()
            return
        BoundedProtocol.admitted += 1
        self._admitted = True
        # uvicorn arms its idle timer only after a response: a connection that never sends would stay forever.
        self._idle_since = self.loop.time()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        cycle = self.cycle
        if isinstance(cycle, OneWriteCycle) and cycle.watch is not None and not cycle.response_complete:
            cycle.watch.fire()
        if self._admitted:
            BoundedProtocol.admitted -= 1
            self._admitted = False
        super().connection_lost(exc)

    # --- the idle timer ---
    # uvicorn arms a timer after each answer and cancels it when the next request's bytes arrive: a timer
    # made and dropped per request, 5 % of the server's own CPU for a small answer. Here a connection keeps
    # one timer, which finds out when it fires whether the connection has been idle long enough, and if not
    # waits out the rest. The bound is the same: an idle connection closes `timeout_keep_alive` seconds after
    # its last answer ended (or after it was opened), and never while a request is under way.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # a request is under way (uvicorn calls this as its bytes arrive)

    def on_response_complete(self) -> None:
        # uvicorn's, with the idle timer kept rather than made anew.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None or self.transport.is_closing():
            return  # under way: its answer arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._idle_check)
        else:
            self.transport.close()

    # --- reading ---

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if not self._in_body:
            room = self._bounds.max_header_bytes - self._header_bytes
            if len(data) > room:
                self._receive_past_room(data, room)
                return
            self._header_bytes += len(data)
        super().data_received(data)
        if self._reading_headers and self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self._bounds.header_timeout, self._header_timed_out)
        elif self._in_body and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self._bounds.body_timeout, self._body_timed_out)

    def _receive_past_room(self, data: bytes, room: int) -> None:
        """Feed what fits under the cap; the rest only if the headers ended within it."""
        self._header_bytes = self._bounds.max_header_bytes  # on_headers_complete resets it
        if room > 0:
            super().data_received(data[:room])
            if self.transport.is_closing():
                return
        if self._header_bytes == self._bounds.max_header_bytes:
            self._refuse(self._bounds.too_large)
            return
        self.data_received(data[room:])

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with a 400; a bound a callback enforced has its own answer.
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        super().send_400_response(msg)

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._bounds.max_headers:
            self._refusal = self._bounds.too_many
            raise _BoundExceeded
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._in_body = True
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        scope = self.scope
        watch = DisconnectWatch()
        scope.setdefault("extensions", {})[DISCONNECT_WATCH] = {"watch": watch}
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is scope:
            # uvicorn makes its own cycle class; the subclass only adds behaviour, so the object can take it.
            cycle.__class__ = OneWriteCycle
            cycle.watch = watch  # type: ignore[attr-defined]

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # --- refusing ---

    def _header_timed_out(self) -> None:
        self._header_timer = None
        self._refuse(self._bounds.header_timeout_answer)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
            return
        # The app reading the body sees a disconnect and gives up before anything is admitted or recorded.
        started = cycle.response_started
        cycle.disconnected = True
        cycle.message_event.set()
        if started:
            self.transport.close()
        else:
            self._write_and_close(self._bounds.body_timeout_answer)

    def _refuse(self, answer: bytes) -> None:
        """Answer a request that broke a bound before it reached the app, then close."""
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered: the answer cannot go in between.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self._write_and_close(answer)

    def _write_and_close(self, answer: bytes) -> None:
        self._cancel_timers()
        self._discarding = True
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Half-closed: the client reads the answer and its end; its own close, or the timer, ends the connection.
        self.transport.write_eof()
        self.flow.resume_reading()
        self._header_timer = self.loop.call_later(LINGER, self.transport.close)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None


class _BoundExceeded(Exception):
    """Raised in a parser callback to stop the parser; send_400_response then answers with `_refusal`."""


def run_server(app: str, *, host: str, port: int, workers: int, access_log: bool, log_level: str | None = None) -> int:
    """uvicorn as Portico runs in production; `app` is an import string, which several workers need."""
    import uvicorn
    from django.conf import settings

    from gateway.supervisor import BoundedMultiprocess

    raise_descriptor_limit()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": BoundedProtocol,
        "lifespan": "on",
        "access_log": access_log,
        "log_level": log_level,
        "proxy_headers": True,
        "timeout_keep_alive": settings.PORTICO_KEEPALIVE_TIMEOUT,
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return 0
    # uvicorn.run's own branch for several workers, with a supervisor whose stop is bounded.
    config = uvicorn.Config(app, **options)
    supervisor = BoundedMultiprocess(config, sockets=[config.bind_socket()])
    supervisor.grace = settings.PORTICO_SHUTDOWN_GRACE
    supervisor.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.server`: the production server without `portico serve`'s database check."""
    import os

    parser = argparse.ArgumentParser(prog="python -m gateway.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    return run_server(
        APP, host=args.host, port=args.port, workers=args.workers, access_log=False, log_level=args.log_level
    )


if __name__ == "__main__":
    sys.exit(main())
