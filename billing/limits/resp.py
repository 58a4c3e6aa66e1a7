"""The limiter's own Redis connection: one pipelined socket speaking RESP2, for EVALSHA and little else.

redis-py spends about 190 µs of CPU on an acquire (measured: its command
packer, connection pool, retry wrapper and a timeout per read), three times
what the rest of a request costs; with hiredis's parser an acquire and its
settle still cost 2.4 to 4 times what they cost here (bench/redis_clients.py).
The limiter sends a few command shapes, always to one Redis (a Redis
Cluster goes through redis-py: clients.py), so this client keeps one
connection, writes each command as soon as it is made and matches replies to
callers in order (Redis answers a connection's commands in the order it got
them), which pipelines concurrent requests for free.

Errors follow redis-py's classes, so callers handle one vocabulary: a reply
error is a `ResponseError` (`NoScriptError` for NOSCRIPT); a connection that
cannot be made or is lost raises `ConnectionError`; no reply in time raises
`TimeoutError`, and the connection is dropped, since a late reply would
otherwise be handed to the next caller.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import parse_url
from redis.exceptions import NoScriptError, ResponseError

_INCOMPLETE = object()


# Each argument's RESP segment, by value: most of a call's arguments (keys, limits, the script's sha) are the same
# from one call to the next, and formatting them again was most of the packing. Emptied when full, so a value
# seen once (a request id, a token count) cannot make it grow without end.
_STR_SEGMENTS: dict[str, str] = {}
_INT_SEGMENTS: dict[int, str] = {}
_SEGMENTS_MAX = 4096


def pack(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: str, bytes, int and float arguments (what the limiter sends), and `Run`s of them.

    Built as one str and encoded once: encoding each of an acquire's thirty-odd arguments apart cost more
    than the rest of the packing. Latin-1 carries bytes unchanged; text beyond ASCII is sent as UTF-8.
    """
    count = len(args)
    parts = [""]
    for arg in args:
        cls = arg.__class__
        # Keyed by exact class: 1, 1.0 and True are equal as keys but not as text.
        known: dict[Any, str] | None = _STR_SEGMENTS if cls is str else _INT_SEGMENTS if cls is int else None
        if known is None:
            if cls is Run:
                parts.append(arg.text)
                count += arg.count - 1
                continue
            text = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
            parts.append(f"${len(text)}\r\n{text}\r\n")
            continue
        segment = known.get(arg)
        if segment is None:
            text = str(arg) if cls is int else arg if arg.isascii() else arg.encode().decode("latin-1")
            segment = f"${len(text)}\r\n{text}\r\n"
            if len(known) >= _SEGMENTS_MAX:
                known.clear()
            known[arg] = segment
        parts.append(segment)
    parts[0] = f"*{count}\r\n"
    return "".join(parts).encode("latin-1")


class Run:
    """Arguments packed once, for commands that send them unchanged call after call: `pack` copies their text.

    An acquire's keys and limits, and a settle's, are the same for every call of one key; packing them
    argument by argument was most of what a call cost the limiter in Python.
    """

    __slots__ = ("count", "text")

    def __init__(self, args: tuple[Any, ...]) -> None:
        packed = pack(args).decode("latin-1")
        header_end = packed.index("\r\n")
        self.count = int(packed[1:header_end])  # the arguments it stands for, those of a Run in it included
        self.text = packed[header_end + 2 :]


def parse(buffer: bytearray, start: int = 0) -> tuple[Any, int]:
    """One reply from `buffer` at `start`: (value, where the next begins), or (_INCOMPLETE, start)."""
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return _INCOMPLETE, start
    kind, line, after = buffer[start], bytes(buffer[start + 1 : line_end]), line_end + 2
    if kind == 43:  # + simple string
        return line.decode(), after
    if kind == 45:  # - error
        message = line.decode()
        return (NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)), after
    if kind == 58:  # : integer
        return int(line), after
    if kind == 36:  # $ bulk string
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return _INCOMPLETE, start
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, start
            items.append(item)
        return items, after
    raise ConnectionError(f"Redis sent something that is not RESP2 (first byte {kind!r})")


class _Protocol(asyncio.Protocol):
    """The connection's callers, in the order their replies will come, each with the time it must come by.

    One timer watches the oldest caller only (replies come in order, so it is the one that would be late
    first) instead of one timer per call: a timer costs an acquire a few microseconds, on every request.
    """

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.transport: Any = None  # asyncio's or uvloop's TCP transport
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()  # each waiter's, in loop time, in the same order
        # Each waiter's orphan handler, in the same order: what to do with its reply if its caller gave up first.
        self.orphans: deque[Callable[[Any], None] | None] = deque()
        self.buffer = bytearray()
        self.closed = False
        self._watch: asyncio.TimerHandle | None = None
        self._outbox: list[bytes] | None = None  # None: nothing written yet in this turn of the loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def expect(self, orphan: Callable[[Any], None] | None = None) -> asyncio.Future[Any]:
        """A future for the next reply, failed with TimeoutError if it has not come within the timeout.

        If the future is cancelled (its caller gave up) before the reply comes, the reply goes to `orphan`,
        unless it is an error. Registered now, not when the caller learns of its cancellation: the reply may
        be read in between.
        """
        waiter = self.loop.create_future()
        deadline = self.loop.time() + self.timeout
        self.waiters.append(waiter)
        self.deadlines.append(deadline)
        self.orphans.append(orphan)
        if self._watch is None:
            self._watch = self.loop.call_at(deadline, self._check)
        return waiter

    def write(self, command: bytes, *, at_once: bool = True) -> None:
        """Send `command` now if it is the first of this turn of the event loop, else with the turn's others.

        A write per command was a system call per acquire and per settle. The first command of a turn
        still goes out at once, so a lone request waits for nothing; those that follow it in the same
        turn (under load, the other requests' acquires and settles) share one write at the turn's end.
        Not `at_once`, a command waits for the turn's end even if it is the first: it is written after
        whatever the code that made it does next in this turn, and before any later turn's command.
        """
        if self._outbox is None:
            if at_once:
                self.transport.write(command)
                self._outbox = []
            else:
                self._outbox = [command]
            self.loop.call_soon(self._send_outbox)
        else:
            self._outbox.append(command)

    def _send_outbox(self) -> None:
        commands, self._outbox = self._outbox, None
        if commands and not self.closed:
            self.transport.write(commands[0] if len(commands) == 1 else b"".join(commands))

    def _check(self) -> None:
        self._watch = None
        if not self.deadlines:
            return
        if self.deadlines[0] <= self.loop.time():
            # A late reply would be handed to the next caller: the connection is dropped, every caller told.
            self._fail(ConnectionError("Redis did not answer in time"), oldest=TimeoutError("Redis did not answer"))
        else:
            self._watch = self.loop.call_at(self.deadlines[0], self._check)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        start = 0
        while self.waiters:
            try:
                value, end = parse(self.buffer, start)
            except (ConnectionError, ValueError) as exc:
                self._fail(ConnectionError(str(exc)))
                return
            if value is _INCOMPLETE:
                break
            start = end
            waiter = self.waiters.popleft()
            self.deadlines.popleft()
            orphan = self.orphans.popleft()
            if not waiter.done():
                if isinstance(value, ResponseError):
                    waiter.set_exception(value)
                else:
                    waiter.set_result(value)
            elif orphan is not None and not isinstance(value, ResponseError):
                orphan(value)  # a caller that gave up still had its reply in line, and wants it
        del self.buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the connection to Redis was lost ({exc or 'closed'})"))

    def _fail(self, error: Exception, *, oldest: Exception | None = None) -> None:
        self.closed = True
        self.orphans.clear()  # their replies will not come: what they did is left to expire, as a dead process's
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.deadlines.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(oldest or error)
            oldest = None
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """One connection to the Redis at `url`, opened on first use and again after it is lost."""

    def __init__(self, url: str, *, timeout: float) -> None:
        options = parse_url(url)
        self.host: str = options.get("host", "127.0.0.1")
        self.port: int = int(options.get("port", 6379))
        self.db = int(options.get("db", 0))
        self.username: str | None = options.get("username")
        self.password: str | None = options.get("password")
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, *args: Any, orphan: Callable[[Any], None] | None = None) -> Any:
        """The reply to a command. With `orphan`: if the caller is cancelled once the command is written, its
        reply (unless an error) goes to `orphan` when it comes, for a command whose effect must be undone."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        return await self._send(protocol, args, orphan)

    def send_soon(self, *args: Any) -> asyncio.Future[Any] | None:
        """Write a command once the current step of the event loop is done, before any command of a later step;
        the future of its reply, or None if no connection is open yet."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return None
        waiter = protocol.expect()
        protocol.write(pack(args), at_once=False)
        return waiter

    async def _send(
        self, protocol: _Protocol, args: tuple[Any, ...], orphan: Callable[[Any], None] | None = None
    ) -> Any:
        waiter = protocol.expect(orphan)
        protocol.write(pack(args))
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled while the reply was on the way, the protocol hands it over; here, the reply came and was
            # the waiter's, but the caller was cancelled before it ran again.
            if orphan is not None and not waiter.cancelled() and waiter.exception() is None:
                orphan(waiter.result())
            raise

    async def _open(self) -> _Protocol:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.timeout):
                _transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self.timeout), self.host, self.port
                )
            if self.password:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self._send(protocol, ("AUTH", *auth))
            if self.db:
                await self._send(protocol, ("SELECT", self.db))
            self._protocol = protocol
            return protocol

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
