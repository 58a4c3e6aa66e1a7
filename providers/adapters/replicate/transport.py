"""Replicate's prediction lifecycle, run below the relay so that one call is one request to it.

Replicate answers the creation of a prediction with the prediction, not always with its output:
a whole answer may still be running when the sync wait (`Prefer: wait`) runs out, and a stream
is read from another URL (`urls.stream`) than the one the prediction was created at. The relay
sends one request and reads one answer, so this transport, which the kind's adapter hands the
gateway's outbound module (`Adapter.transport()`), takes the creation request and returns the
answer the adapter translates:

- a whole answer: the prediction polled at `urls.get` until it succeeded, failed or was canceled;
  one that failed or was canceled comes back as an error answer carrying the prediction
  (`errors.FAILED_PREDICTION_STATUS`), which the adapter's `failure()` maps;
- a stream: the `urls.stream` event stream, or, for a model that does not stream, the polled
  output written as that stream's `output` and `done` events.

Error answers of Replicate's own pass through untouched. Every follow-up request carries the
creation request's timeouts and headers; they are all made within the call's total timeout,
which the outbound module holds the whole exchange to. The credential only goes to the
service it was created at: a URL on another site is not followed. A prediction given up on
(the deadline passed, the client left mid-stream) is canceled, so it stops running and costing.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson

from providers.adapters.replicate.answers import output_text
from providers.adapters.replicate.errors import FAILED_PREDICTION_STATUS

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
# Polling starts quick (most chat answers take seconds) and slows down for long ones.
FIRST_POLL = 0.25
LONGEST_POLL = 2.0
_POLL_GROWTH = 1.5
# Headers of the creation request that do not belong on the requests that follow it.
_CREATION_ONLY = frozenset({"host", "content-type", "content-length", "prefer", "accept"})

Sleep = Callable[[float], Awaitable[None]]


class _Bytes(httpx.AsyncByteStream):
    """A body Portico wrote itself, readable once, as the relay reads upstream bodies."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._content


class _CancelOnEarlyClose(httpx.AsyncByteStream):
    """An event stream that cancels its prediction if it is closed before the upstream ended it."""

    def __init__(self, stream: httpx.AsyncByteStream, cancel: Callable[[], None]) -> None:
        self._stream = stream
        self._cancel = cancel
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            # A stream may be closed once its `done` event is in, before the upstream closes its end.
            self._ended = self._ended or b"event: done" in chunk or b"event:done" in chunk
            yield chunk
        self._ended = True

    async def aclose(self) -> None:
        if not self._ended:
            self._cancel()
        await self._stream.aclose()


class NetworkPool(httpx.AsyncBaseTransport):
    """httpx's connection pool for one provider, opened by its first request.

    The gateway keeps one transport per provider for as long as the provider's settings hold
    (`providers.http.Upstreams`), and other callers ask for one only to look at it (the admin asks each
    kind whether it runs in process): opening the pool, and loading the trust store, on the first
    request rather than when the transport is made leaves those costing nothing.
    """

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._pool: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._pool is None:
            limit = self.max_connections
            limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
            self._pool = httpx.AsyncHTTPTransport(limits=limits)
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()


class PredictionTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        network: httpx.AsyncBaseTransport,
        *,
        first_poll: float = FIRST_POLL,
        longest_poll: float = LONGEST_POLL,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.network = network
        self.first_poll = first_poll
        self.longest_poll = longest_poll
        self.sleep = sleep
        # Cancellations still in flight: held so that they are not collected before they are sent.
        self._cancellations: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/predictions"):
            return await self.network.handle_async_request(request)  # the model list, say
        streamed = _asks_to_stream(await request.aread())
        answer = await self.network.handle_async_request(request)
        if answer.status_code >= 400:
            return answer
        found = _prediction(await _read(answer))
        if found is None:
            return _problem(502, "Replicate answered the creation of a prediction with something else.")
        stream_url = (found.get("urls") or {}).get("stream")
        if streamed and isinstance(stream_url, str) and stream_url and found["status"] not in TERMINAL:
            return await self._stream(request, found, stream_url)
        finished = await self._settle(request, found)
        if isinstance(finished, httpx.Response):
            return finished
        if finished["status"] != "succeeded":
            return _json(FAILED_PREDICTION_STATUS, finished)
        return _written_stream(finished) if streamed else _json(200, finished)

    async def aclose(self) -> None:
        # Cancellations already on their way are let through before the connections they use are closed.
        await asyncio.gather(*self._cancellations, return_exceptions=True)
        await self.network.aclose()

    async def _settle(self, request: httpx.Request, found: dict[str, Any]) -> dict[str, Any] | httpx.Response:
        """The prediction once it has ended, polled at its `urls.get`; an error answer if polling failed."""
        delay = self.first_poll
        try:
            while found["status"] not in TERMINAL:
                url = _followed(request, (found.get("urls") or {}).get("get"))
                if url is None:
                    return _problem(502, "Replicate gave no URL on its own service to poll the prediction at.")
                await self.sleep(delay)
                delay = min(delay * _POLL_GROWTH, self.longest_poll)
                answer = await self.network.handle_async_request(_follow_up(request, "GET", url))
                if answer.status_code >= 400:
                    return answer
                polled = _prediction(await _read(answer))
                if polled is None:
                    return _problem(502, "Replicate answered a poll of the prediction with something else.")
                found = polled
        except (asyncio.CancelledError, httpx.TransportError):
            # Given up on (the call's deadline, a client gone): the prediction need not run on.
            self._cancel(request, found)
            raise
        return found

    async def _stream(self, request: httpx.Request, found: dict[str, Any], stream_url: str) -> httpx.Response:
        url = _followed(request, stream_url)
        if url is None:
            self._cancel(request, found)
            return _problem(502, "Replicate gave a stream URL outside its own service; Portico did not follow it.")
        follow = _follow_up(request, "GET", url)
        follow.headers["accept"] = "text/event-stream"
        follow.headers["cache-control"] = "no-store"
        try:
            answer = await self.network.handle_async_request(follow)
        except (asyncio.CancelledError, httpx.TransportError):
            self._cancel(request, found)
            raise
        if answer.status_code >= 400:
            self._cancel(request, found)
            return answer
        events = answer.stream
        assert isinstance(events, httpx.AsyncByteStream)  # what an async transport answers with
        stream = _CancelOnEarlyClose(events, lambda: self._cancel(request, found))
        return httpx.Response(answer.status_code, headers=answer.headers, stream=stream, extensions=answer.extensions)

    def _cancel(self, request: httpx.Request, found: dict[str, Any]) -> None:
        """Cancel the prediction in the background: the caller is on its way out and must not wait for it."""
        url = _followed(request, (found.get("urls") or {}).get("cancel"))
        if url is None or found.get("status") in TERMINAL:
            return
        task = asyncio.get_running_loop().create_task(self._send_cancel(_follow_up(request, "POST", url)))
        self._cancellations.add(task)
        task.add_done_callback(self._cancellations.discard)

    async def _send_cancel(self, cancel: httpx.Request) -> None:
        try:
            answer = await self.network.handle_async_request(cancel)
            await answer.aclose()
        except httpx.TransportError:
            pass  # best effort: Replicate ends an abandoned prediction on its own in the end


def _asks_to_stream(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


async def _read(answer: httpx.Response) -> bytes:
    try:
        return await answer.aread()
    finally:
        await answer.aclose()


def _prediction(payload: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("status"), str) else None


def _followed(request: httpx.Request, url: Any) -> httpx.URL | None:
    """`url` if it is on the service the prediction was created at (so it may see the credential), else None."""
    if not isinstance(url, str) or not url:
        return None
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    origin = request.url
    if target.scheme != origin.scheme or not target.host:
        return None
    if target.host == origin.host:
        return target
    # Replicate streams from a sibling host (`streaming.api.replicate.com` beside `api.replicate.com`).
    labels = origin.host.split(".")
    if _is_address(origin.host) or len(labels) < 3:
        return None
    return target if target.host.endswith("." + ".".join(labels[1:])) else None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _follow_up(request: httpx.Request, method: str, url: httpx.URL) -> httpx.Request:
    headers = {name: value for name, value in request.headers.items() if name.lower() not in _CREATION_ONLY}
    return httpx.Request(method, url, headers=headers, extensions=request.extensions)


def _json(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json"}, stream=_Bytes(orjson.dumps(body)))


def _problem(status: int, detail: str) -> httpx.Response:
    problem = orjson.dumps({"title": "Bad gateway", "detail": detail, "status": status})
    return httpx.Response(status, headers={"content-type": "application/problem+json"}, stream=_Bytes(problem))


def _written_stream(finished: dict[str, Any]) -> httpx.Response:
    """A finished prediction as the event stream Replicate would have sent for it: its output, then `done`."""
    text = output_text(finished.get("output"))
    events = b""
    if text:
        lines = b"\n".join(b"data: " + line for line in text.encode().split(b"\n"))
        events = b"event: output\n" + lines + b"\n\n"
    events += b"event: done\ndata: {}\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Bytes(events))
