"""Serving /v1/ without a thread hop per request.

Django's ASGIHandler sends `request_started`/`request_finished` to their
synchronous receivers and closes each response, each through `sync_to_async`:
three hops to a worker thread per request, which cap a 2-core machine at a
quarter of what the event loop alone can do. The OpenAI surface touches no
database (it reads the in-memory snapshot), so it needs none of that
bookkeeping: this handler resolves the URL, builds the request, awaits the
async Ninja view and writes the response straight to the ASGI channel. Any
path whose view is not a coroutine (the API docs, the admin) goes to Django's
own handler untouched.

It also answers CORS preflights before any URL is resolved, and adds the CORS
headers of a browser client's answer as it goes out (gateway/cors.py); with
tracing on, each request runs under its span (gateway/observability/tracing.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.urls import Resolver404, ResolverMatch, get_resolver

from gateway import operations
from gateway.asgi_request import build_request
from gateway.cors import allow_origin, grant_allows, preflight_headers, preflight_of, preflight_origins
from gateway.errors import BodyTooLarge, MethodNotAllowed, NotFound, PorticoError, error_response
from gateway.observability import tracing
from gateway.observability.clock import RequestClock
from gateway.observability.clock import start as start_clock
from gateway.observability.handoff import hand_off
from gateway.server_cycle import BODY_FOLLOWS, DISCONNECT_WATCH, DisconnectWatch
from gateway.snapshot import store
from gateway.sse import EventStream

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


# URL names of views that read their (multipart, possibly large) body themselves, as a stream.
STREAMED_UPLOADS = frozenset({"audio-transcriptions", "files"})
# Whole answers from this size on are gzipped for clients that accept it; smaller ones gain too little.
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 5  # most of level 9's saving on JSON at a fraction of its CPU
# Larger answers (a batch of embeddings) are compressed on a worker thread, so the event loop is not held up.
GZIP_INLINE_MAX = 64 * 1024


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge.over(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _RandomIds:
    """128 random bits per id, as unique as a uuid4; read from the OS 256 ids at a time, not a system call each."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self._hex = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._hex):
            self._hex, at = os.urandom(4096).hex(), 0
        self._at = at + 32
        return self._hex[at : at + 32]


_random_ids = _RandomIds()
if hasattr(os, "register_at_fork"):  # a forked worker must not hand out its parent's ids
    os.register_at_fork(after_in_child=_random_ids.forget)


def new_request_id() -> str:
    return "req_" + _random_ids.next()


def _client_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and 0 < len(value) <= 200:
            return value.decode("latin-1")
    return ""


def _headers(response: HttpResponseBase, request_id: str) -> list[tuple[bytes, bytes]]:
    # Read from the store Django keeps them in (lower-cased name -> (name, value), values already str): its
    # case-insensitive mapping lower-cases each name again on every read, a dozen times per answer.
    store = response.headers._store
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in store.values()]
    if "x-request-id" not in store:  # a body's `request_id` extension names its own
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    return headers


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            for item in value.split(b","):
                coding, _, params = item.partition(b";")
                if coding.strip().lower() in (b"gzip", b"*"):
                    return params.replace(b" ", b"").lower() not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


async def _gzipped(body: bytes) -> bytes:
    if len(body) <= GZIP_INLINE_MAX:
        return zlib.compress(body, GZIP_LEVEL, wbits=31)  # wbits 31: a gzip member, as Content-Encoding says
    return await asyncio.to_thread(zlib.compress, body, GZIP_LEVEL, 31)


def _overhead(clock: RequestClock, status: int, scope: Scope) -> tuple[bytes, bytes]:
    """x-portico-overhead-ms, fixed as the response starts unless the call's end fixed it already."""
    ms = clock.freeze()
    if clock.call is None:  # no call, so no ledger row to count it by: counted and logged as a bare answer
        hand_off.answer(status, clock, scope["path"])
    return (b"x-portico-overhead-ms", str(ms).encode())


async def send_response(
    response: HttpResponseBase, send: Send, request_id: str, clock: RequestClock, scope: Scope
) -> None:
    headers = _headers(response, request_id)
    if isinstance(response, EventStream):
        try:
            headers.append(_overhead(clock, response.status_code, scope))
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            async for chunk in response.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            # Runs on a normal end, on an error and when the client leaves (this task is cancelled).
            await response.aclose()
        return
    assert isinstance(response, HttpResponse)
    body = response.content
    if len(body) >= GZIP_MIN_BYTES and "content-encoding" not in response.headers._store and _accepts_gzip(scope):
        body = await _gzipped(body)
        headers += ((b"content-encoding", b"gzip"), (b"vary", b"accept-encoding"))
    headers.append(_overhead(clock, response.status_code, scope))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers, BODY_FOLLOWS: True})
    await send({"type": "http.response.body", "body": body})


async def send_error(exc: PorticoError, send: Send, request_id: str, clock: RequestClock, scope: Scope) -> None:
    await send_response(error_response(exc), send, request_id, clock, scope)


async def _fire_on_disconnect(receive: Receive, watch: DisconnectWatch) -> None:
    """For a server that does not fire the watch itself: wait for `http.disconnect` on the ASGI channel."""
    if (await receive())["type"] == "http.disconnect":
        watch.fire()


class FastPath:
    """ASGI app for /v1/: async Ninja views with no hop, everything else to `fallback`."""

    def __init__(self, fallback: ASGIApp) -> None:
        self.fallback = fallback
        self.max_body = settings.PORTICO_MAX_BODY_BYTES
        # URL resolution walks every pattern with regexes; the /v1/ paths seen are few, so remember them.
        self._resolve = functools.lru_cache(maxsize=1024)(get_resolver().resolve)
        # asyncio.iscoroutinefunction() unwraps and inspects the view each time: about 2 µs a request.
        self._is_async = functools.lru_cache(maxsize=1024)(asyncio.iscoroutinefunction)
        tracing.setup()  # only if asked for (PORTICO_OTEL) and installed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if tracing.state.enabled and "portico.traced" not in scope:
            # Served again under the request's span, marked so this is done once.
            scope["portico.traced"] = True
            await tracing.traced_request(self, scope, receive, send)
            return
        clock = start_clock()
        if scope["method"] == "OPTIONS" and await _answer_preflight(scope, send, clock):
            return
        try:
            match = self._resolve(scope["path"])
        except Resolver404:
            match = None
        if match is not None and match.url_name == "api-root":
            match = None  # Ninja's root view only anchors reverse(); OpenAI answers GET /v1/ as an unknown URL
        if match is not None and not self._is_async(match.func):
            await self.fallback(scope, receive, send)
            return
        # Portico's own id is unique (it keys the ledger); the client's, if it sent one, is echoed back.
        request_id = new_request_id()
        client_request_id = _client_request_id(scope)
        echoed_id = client_request_id or request_id
        if match is not None and match.url_name in STREAMED_UPLOADS:
            await self._serve_upload(scope, receive, match, send, request_id, client_request_id, clock)
            return
        try:
            body = await read_body(receive, self.max_body)
        except ClientGone:
            return
        except BodyTooLarge as exc:
            await send_error(exc, send, echoed_id, clock, scope)
            return
        if match is None:
            error = NotFound(f"Invalid URL ({scope['method']} {scope['path']})")
            await send_error(error, send, echoed_id, clock, scope)
            return
        # Served in this task, which is cancelled if the client disconnects; that closes the upstream call too.
        task = asyncio.current_task()
        assert task is not None
        watch: DisconnectWatch | None = scope.get("extensions", {}).get(DISCONNECT_WATCH, {}).get("watch")
        watcher = None
        if watch is None:  # Portico's own server fires the watch when the connection is lost; others need a task
            watch = DisconnectWatch()
            watcher = asyncio.get_running_loop().create_task(_fire_on_disconnect(receive, watch))
        watch.task = task
        try:
            await self._serve(scope, body, match, send, request_id, client_request_id, clock)
        except asyncio.CancelledError:
            if not watch.gone:
                raise  # a shutdown, not a client gone
            task.uncancel()
        finally:
            watch.task = None
            if watcher is not None:
                watcher.cancel()

    async def _serve_upload(
        self,
        scope: Scope,
        receive: Receive,
        match: ResolverMatch,
        send: Send,
        request_id: str,
        client_request_id: str,
        clock: RequestClock,
    ) -> None:
        """An upload's body is read by its view as it is relayed; so is a disconnect, hence no watcher here."""
        request = _request(scope, b"", match, request_id, client_request_id)
        request.asgi_receive = receive  # type: ignore[attr-defined]
        try:
            response = await match.func(request, *match.args, **match.kwargs)
        except ClientGone:
            return
        await _respond(response, request, scope, send, client_request_id or request_id, clock)

    async def _serve(
        self,
        scope: Scope,
        body: bytes,
        match: ResolverMatch,
        send: Send,
        request_id: str,
        client_request_id: str,
        clock: RequestClock,
    ) -> None:
        request = _request(scope, body, match, request_id, client_request_id)
        operation = operations.direct(match.func, scope["method"])
        if operation is not None:
            response = await operations.run(operation, request)
        else:
            response = await match.func(request, *match.args, **match.kwargs)
        await _respond(response, request, scope, send, client_request_id or request_id, clock)


def _request(scope: Scope, body: bytes, match: ResolverMatch, request_id: str, client_request_id: str) -> ASGIRequest:
    request = build_request(scope, body)
    request.resolver_match = match
    request.portico_request_id = request_id  # type: ignore[attr-defined]
    request.client_request_id = client_request_id  # type: ignore[attr-defined]
    return request


async def _respond(
    response: HttpResponseBase, request: ASGIRequest, scope: Scope, send: Send, echoed_id: str, clock: RequestClock
) -> None:
    if isinstance(response, HttpResponseNotAllowed):
        # Ninja answers a wrong method in plain text; clients of this API expect OpenAI's error shape.
        error = MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}.")
        error.headers["Allow"] = response["Allow"]
        response = error_response(error)
    origin = request.META.get("HTTP_ORIGIN")  # all that CORS costs a request from outside a browser
    if origin is not None and grant_allows(getattr(request, "auth", None), origin):
        allow_origin(response, origin)
    await send_response(response, send, echoed_id, clock, scope)


async def _answer_preflight(scope: Scope, send: Send, clock: RequestClock) -> bool:
    """Answer a CORS preflight (True), before any URL or key is looked at; a plain OPTIONS is left alone."""
    origin = preflight_of(scope["headers"])
    if origin is None:
        return False
    allowed = preflight_origins.allows((await store.get()).keys, origin)
    headers = preflight_headers(origin, allowed)
    headers.append(_overhead(clock, 204, scope))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
    return True
