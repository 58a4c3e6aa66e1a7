"""A TCP proxy on 127.0.0.1 that a test can cut: a service goes away for one client while others keep it.

The end-to-end tests share one Postgres; taking it down would fail every
other test. A server started with its DATABASE_URL pointing at this proxy
instead loses its database alone:

    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.start()
    ...                 # a server connects to 127.0.0.1:proxy.port
    proxy.cut()         # every connection aborted, new ones closed as soon as they are accepted
    proxy.restore()     # new connections reach the target again
    proxy.stop()

`lag` (seconds, 0 by default) holds back each reply from the target that
long: a slow service, as a loaded machine makes it.

It runs on an event loop of its own in a background thread; the methods
above are called from the test's thread and return once done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, lag: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.lag = lag
        self.port = 0
        self.up = True
        self.accepted = 0  # connections forwarded
        self.refused = 0  # connections closed at once because the proxy was cut
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    # --- called from the test's thread ---

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="tcp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the TCP proxy did not start within 10 s")

    def cut(self) -> None:
        """Abort every forwarded connection, both ends, and close the ones that arrive until `restore()`."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._restore())

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the proxy is not started"
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    # --- on the proxy's loop ---

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _cut(self) -> None:
        self.up = False
        for transport in list(self._transports):
            transport.abort()

    async def _restore(self) -> None:
        self.up = True

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._cut()
        await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(client_reader, client_writer)
        finally:
            self._handlers.discard(handler)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.accepted += 1
        pair: set[Any] = {client_writer.transport, target_writer.transport}
        self._transports |= pair
        try:
            await asyncio.gather(
                self._pump(client_reader, target_writer), self._pump(target_reader, client_writer, lag=self.lag)
            )
        finally:
            self._transports -= pair

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, lag: float = 0.0) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if lag:
                    await asyncio.sleep(lag)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass  # the other end went away, or the proxy was cut
        finally:
            writer.transport.abort()
