"""What a client may send before it is authenticated is bounded: size, count and time, each with its own answer.

A server started the production way (gateway.server) with short timeouts is
probed over raw sockets, since an HTTP client library would refuse to send
most of these requests. Every refusal is an exact status line and OpenAI's
error body, and the server goes on serving fresh connections afterwards.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PorticoServer

pytestmark = pytest.mark.integration

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 50
TIMEOUT = 1  # header, body and keep-alive bounds of the server under test, in seconds
# How late past its bound a refusal may come on a loaded machine.
SLACK = 2.0


@pytest.fixture(scope="module")
def bounded(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    env = {
        **server_env,
        "PORTICO_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "PORTICO_MAX_HEADERS": str(MAX_HEADERS),
        "PORTICO_HEADER_TIMEOUT": str(TIMEOUT),
        "PORTICO_BODY_TIMEOUT": str(TIMEOUT),
        "PORTICO_KEEPALIVE_TIMEOUT": str(TIMEOUT),
    }
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("bounded") / "server.log")
    server.start()
    yield server
    server.stop()


# --- raw HTTP ---


def connect(server: PorticoServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes; it may answer and stop reading before the end."""
    view = memoryview(data)
    try:
        while view:
            sent = sock.send(view[: 64 * 1024])
            view = view[sent:]
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(answer: bytes) -> tuple[bytes, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, json.loads(body) if body else None


def refusal(status_line: bytes, code: str, message: str) -> tuple[bytes, Any]:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return status_line, {"error": error}


def assert_still_serving(server: PorticoServer) -> None:
    """A normal request on a fresh connection is answered (401: no key, from a server that is up)."""
    with connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: portico\r\nConnection: close\r\n\r\n")
        status_line, _, body = parse(read_to_close(sock))
    assert status_line == b"HTTP/1.1 401 Unauthorized"
    assert body["error"]["code"] == "invalid_api_key"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Everything the server sent until it closed, and how long that took."""
    started = time.monotonic()
    sock.settimeout(seconds)
    data = read_to_close(sock)
    return data, time.monotonic() - started


# --- size and count ---


def test_it_serves_headers_up_to_the_bounds_across_reads(bounded: PorticoServer) -> None:
    """The bounds are counted across reads: headers just under them, in pieces, are served; one more byte is not."""
    filler = b"".join(b"x-filler-%d: %s\r\n" % (n, b"v" * 200) for n in range(MAX_HEADERS - 3))
    request = b"GET /v1/models HTTP/1.1\r\nHost: portico\r\nConnection: close\r\n" + filler
    request += b"x-last: " + b"v" * (MAX_HEADER_BYTES - len(request) - 12) + b"\r\n\r\n"
    assert len(request) == MAX_HEADER_BYTES
    for extra, status_line in (
        (b"", b"HTTP/1.1 401 Unauthorized"),
        (b"v", b"HTTP/1.1 431 Request Header Fields Too Large"),
    ):
        with connect(bounded) as sock:
            whole = request.replace(b"x-last: ", b"x-last: " + extra)
            for start in range(0, len(whole), 1000):
                send_all(sock, whole[start : start + 1000])
            assert parse(read_to_close(sock))[0] == status_line


def test_it_answers_an_oversized_header_with_431_without_holding_it(bounded: PorticoServer) -> None:
    before = rss_kib(bounded.pid)
    with connect(bounded) as sock:
        send_all(sock, b"GET /v1/models HTTP/1.1\r\nHost: portico\r\nAuthorization: Bearer " + b"a" * 1024 * 1024)
        status_line, headers, body = parse(read_to_close(sock))
    assert (status_line, body) == refusal(
        b"HTTP/1.1 431 Request Header Fields Too Large",
        "request_header_fields_too_large",
        f"The request line and headers are larger than {MAX_HEADER_BYTES} bytes.",
    )
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert rss_kib(bounded.pid) - before < 4 * 1024
    assert_still_serving(bounded)


def test_it_answers_ten_thousand_tiny_headers_with_431(bounded: PorticoServer) -> None:
    with connect(bounded) as sock:
        send_all(sock, b"GET /v1/models HTTP/1.1\r\nHost: portico\r\n" + b"a: b\r\n" * 10_000 + b"\r\n")
        status_line, headers, body = parse(read_to_close(sock))
    assert (status_line, body) == refusal(
        b"HTTP/1.1 431 Request Header Fields Too Large",
        "request_header_fields_too_large",
        f"The request has more than {MAX_HEADERS} headers.",
    )
    assert headers["connection"] == "close"
    assert_still_serving(bounded)


# --- time ---


def test_it_answers_headers_sent_a_byte_at_a_time_with_408(bounded: PorticoServer) -> None:
    request = b"GET /v1/models HTTP/1.1\r\nHost: portico\r\n\r\n"
    with connect(bounded) as sock:
        started = time.monotonic()
        for byte in request:
            sock.sendall(bytes([byte]))
            readable, _, _ = select.select([sock], [], [], 0.25)  # the pace of the trickle, or the server's answer
            if readable:
                break
        answer, _ = closed_within(sock, TIMEOUT + SLACK)
        elapsed = time.monotonic() - started
    status_line, headers, body = parse(answer)
    assert (status_line, body) == refusal(
        b"HTTP/1.1 408 Request Timeout",
        "request_timeout",
        f"The request headers did not arrive within {TIMEOUT:g} seconds.",
    )
    assert headers["connection"] == "close"
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + SLACK
    assert_still_serving(bounded)


def test_it_answers_a_chunked_body_that_never_ends_with_408(bounded: PorticoServer) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: portico\r\nContent-Type: application/json\r\n"
    with connect(bounded) as sock:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        started = time.monotonic()
        # A chunk every quarter second: a trickle that never stops is bounded as much as one that stalls.
        while not select.select([sock], [], [], 0.25)[0] and time.monotonic() - started < TIMEOUT + SLACK:
            send_all(sock, b"1\r\n \r\n")
        answer, _ = closed_within(sock, TIMEOUT + SLACK)
        elapsed = time.monotonic() - started
    status_line, headers, body = parse(answer)
    assert (status_line, body) == refusal(
        b"HTTP/1.1 408 Request Timeout",
        "request_timeout",
        f"The request body did not arrive within {TIMEOUT:g} seconds.",
    )
    assert headers["connection"] == "close"
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + SLACK
    assert_still_serving(bounded)


def test_it_closes_a_connection_that_never_sends_anything(bounded: PorticoServer) -> None:
    with connect(bounded) as sock:
        answer, elapsed = closed_within(sock, TIMEOUT + SLACK)
    assert answer == b""
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + SLACK
    assert_still_serving(bounded)


def read_one_answer(sock: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        answer += sock.recv(65536)
    return answer


def test_the_idle_bound_counts_from_the_last_answer_not_the_first(bounded: PorticoServer) -> None:
    # The connection's idle timer is not made anew per request: one armed by an earlier answer (or at connect)
    # must find a later answer's connection not idle long enough, and wait out the rest of the bound.
    with connect(bounded) as sock:
        request = b"GET /v1/models HTTP/1.1\r\nHost: portico\r\n\r\n"
        sock.sendall(request)
        assert read_one_answer(sock).startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        time.sleep(TIMEOUT * 0.6)
        sock.sendall(request)
        assert read_one_answer(sock).startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        time.sleep(TIMEOUT * 0.6)  # past the first answer's bound, within the second's
        sock.sendall(request)
        assert read_one_answer(sock).startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        rest, elapsed = closed_within(sock, TIMEOUT + SLACK)
    assert rest == b""
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + SLACK


def test_it_closes_an_idle_keep_alive_connection(bounded: PorticoServer) -> None:
    with connect(bounded) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: portico\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        rest, elapsed = closed_within(sock, TIMEOUT + SLACK)
    assert rest == b""
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + SLACK
    assert_still_serving(bounded)
