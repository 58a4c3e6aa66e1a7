"""The server protocol's request cycle: a whole answer in one write, and a disconnect that cancels the request.

The protocol is driven as the event loop would drive it, with a transport that
records what is written; the integration suite serves every request through the
same protocol over real sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.server import BoundedProtocol
from gateway.server_cycle import BODY_FOLLOWS, DISCONNECT_WATCH, DisconnectWatch, OneWriteCycle

REQUEST = b"POST /v1/x HTTP/1.1\r\nHost: portico\r\nContent-Length: 2\r\n\r\n{}"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def serve(app: Any, request: bytes = REQUEST) -> tuple[BoundedProtocol, RecordingTransport]:
    config = Config(app, lifespan="off", proxy_headers=False)
    config.load()
    protocol = BoundedProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    return protocol, transport


def whole_answer(
    *, follows: bool, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"hello"
) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        start = {"type": "http.response.start", "status": status, "headers": headers or [(b"content-length", b"5")]}
        if follows:
            start[BODY_FOLLOWS] = True
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return app


async def finish(protocol: BoundedProtocol) -> None:
    await asyncio.gather(*protocol.tasks)


async def test_a_start_whose_body_follows_goes_out_with_the_body_in_one_write() -> None:
    protocol, transport = serve(whole_answer(follows=True))
    await finish(protocol)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5" in head
    assert body == b"hello"
    assert protocol.cycle.response_complete
    assert not transport.closed  # keep-alive: the connection stays for the next request


async def test_any_other_start_is_written_at_once() -> None:
    protocol, transport = serve(whole_answer(follows=False))
    await finish(protocol)
    assert len(transport.writes) == 2
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[1] == b"hello"


async def test_a_connection_that_closes_after_the_answer_closes_after_the_one_write() -> None:
    request = REQUEST.replace(b"Host: portico\r\n", b"Host: portico\r\nConnection: close\r\n")
    protocol, transport = serve(whole_answer(follows=True), request)
    await finish(protocol)
    assert len(transport.writes) == 1
    assert transport.writes[0].endswith(b"hello")
    assert transport.closed


ANSWERS = {
    "an answer with Portico's headers": (
        200,
        [
            (b"Content-Type", b"application/json"),
            (b"x-request-id", b"req_0123"),
            (b"x-portico-overhead-ms", b"0.412"),
            (b"x-ratelimit-remaining-requests", b"99"),
            (b"content-length", b"16"),
        ],
        b'{"id":"chatcmpl"}'[:16],
    ),
    "an error": (429, [(b"retry-after", b"2"), (b"content-length", b"2")], b"{}"),
    "a value with a tab and text beyond ASCII": (200, [(b"x-note", b"a\tb \xe9"), (b"content-length", b"0")], b""),
}


@pytest.mark.parametrize("request_head", [b"", b"Connection: close\r\n"], ids=["keep-alive", "close"])
@pytest.mark.parametrize("case", ANSWERS, ids=list(ANSWERS))
async def test_a_held_answer_is_byte_for_byte_what_uvicorn_writes_in_two(case: str, request_head: bytes) -> None:
    status, headers, body = ANSWERS[case]
    request = REQUEST.replace(b"Host: portico\r\n", b"Host: portico\r\n" + request_head)
    answers, closed = [], []
    for follows in (True, False):
        protocol, transport = serve(whole_answer(follows=follows, status=status, headers=headers, body=body), request)
        protocol.server_state.default_headers = [(b"date", b"Sun, 06 Dec 2026 21:00:00 GMT"), (b"server", b"p")]
        await finish(protocol)
        assert len(transport.writes) == (1 if follows else 2)
        answers.append(b"".join(transport.writes))
        closed.append(transport.closed)
        assert protocol.cycle.response_complete
    assert answers[0] == answers[1]
    assert closed[0] == closed[1] == bool(request_head)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([(b"content-length", b"5"), (b"x-bad", b"a\r\nset-cookie: x")], b"hello"),  # uvicorn refuses the value
        ([(b"content-length", b"9")], b"hello"),  # uvicorn refuses a body shorter than its length
    ],
    ids=["a value that would split the header", "a length that is not the body's"],
)
async def test_a_held_answer_uvicorn_would_refuse_is_refused_as_it_would(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    outcomes = []
    for follows in (True, False):
        protocol, transport = serve(whole_answer(follows=follows, headers=headers, body=body))
        await finish(protocol)
        # uvicorn's refusal is an error in the app, which ends the connection: the same bytes alone would not do.
        outcomes.append((b"".join(transport.writes), transport.closed))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1]
    assert b"x-bad: a\r\n" not in outcomes[0][0]


@pytest.mark.parametrize("where", ["name", "value"])
async def test_every_byte_in_a_header_is_let_through_or_refused_as_uvicorn_would(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one-write path checks names and values with its own tables. A byte it let through that uvicorn
    # refuses would put a bad header on the wire; one it refused that uvicorn takes would go the slow way.
    taken: list[bool] = []
    write_whole = OneWriteCycle._write_whole

    def recording(self: OneWriteCycle, start: Any, message: Any) -> bool:
        taken.append(write_whole(self, start, message))
        return taken[-1]

    monkeypatch.setattr(OneWriteCycle, "_write_whole", recording)
    for byte in range(256):
        name, value = (b"x-a" + bytes((byte,)), b"v") if where == "name" else (b"x-a", b"v" + bytes((byte,)) + b"w")
        headers = [(name, value), (b"content-length", b"5")]
        outcomes = []
        for follows in (True, False):
            protocol, transport = serve(whole_answer(follows=follows, headers=headers))
            await finish(protocol)
            outcomes.append((b"".join(transport.writes), transport.closed))
        assert outcomes[0] == outcomes[1], f"byte {byte:#04x} in a header {where}"
        accepted = outcomes[1][0].startswith(b"HTTP/1.1 200")
        assert taken.pop() == accepted, f"byte {byte:#04x} in a header {where}"
    assert not taken


async def test_a_head_request_gets_its_headers_and_no_body() -> None:
    protocol, transport = serve(whole_answer(follows=True), REQUEST.replace(b"POST", b"HEAD", 1))
    await finish(protocol)
    answer = b"".join(transport.writes)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5\r\n" in answer
    assert answer.endswith(b"\r\n\r\n")


async def test_an_app_that_fails_after_a_held_start_gets_uvicorns_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], BODY_FOLLOWS: True})
        raise RuntimeError("lost its body")

    protocol, transport = serve(app)
    await finish(protocol)
    answer = b"".join(transport.writes)
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"HTTP/1.1 200" not in answer


async def test_a_lost_connection_cancels_the_watched_task() -> None:
    started = asyncio.Event()
    outcome: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        watch: DisconnectWatch = scope["extensions"][DISCONNECT_WATCH]["watch"]
        watch.task = asyncio.current_task()
        started.set()
        try:
            await asyncio.sleep(30)  # an upstream that has not answered yet
        except asyncio.CancelledError:
            outcome["gone"] = watch.gone
            raise

    protocol, transport = serve(app)
    await started.wait()
    protocol.connection_lost(None)
    await asyncio.gather(*protocol.tasks, return_exceptions=True)
    assert outcome == {"gone": True}


async def test_a_lost_connection_leaves_an_unwatched_task_alone() -> None:
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)  # no task registered with the watch: nothing cancels this
        done.set()

    protocol, transport = serve(app)
    await asyncio.sleep(0)
    protocol.connection_lost(None)
    await asyncio.wait_for(done.wait(), 5)
