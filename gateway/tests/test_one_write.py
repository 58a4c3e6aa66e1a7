"""An answer sized by content-length leaves the server in one write; a streamed one has its head sent at once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from gateway.server import OneWriteCycle


class Connection:
    """The transport a cycle writes to, keeping every write as it came."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(method: str = "POST", *, keep_alive: bool = True) -> tuple[OneWriteCycle, Connection]:
    connection = Connection()
    log = logging.getLogger("test")
    answer = OneWriteCycle(
        scope={"type": "http", "method": method, "path": "/v1/models", "headers": []},  # type: ignore[typeddict-item]
        transport=connection,  # type: ignore[arg-type]
        flow=FlowControl(connection),  # type: ignore[arg-type]
        logger=log,
        access_logger=log,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return answer, connection


SIZED = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}


async def test_a_sized_answer_is_one_write_of_head_and_body() -> None:
    answer, connection = cycle()

    await answer.send(SIZED)
    assert connection.writes == []
    await answer.send({"type": "http.response.body", "body": b"{}"})

    assert connection.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert answer.response_complete
    assert answer.transport is connection


async def test_a_sized_answer_that_closes_the_connection_closes_it_after_the_one_write() -> None:
    answer, connection = cycle(keep_alive=False)

    await answer.send(SIZED)
    await answer.send({"type": "http.response.body", "body": b"{}"})

    assert len(connection.writes) == 1
    assert connection.writes[0].endswith(b"connection: close\r\n\r\n{}")
    assert connection.closed


async def test_a_streamed_answer_has_its_head_written_before_any_event() -> None:
    answer, connection = cycle()

    events = [(b"content-type", b"text/event-stream")]
    await answer.send({"type": "http.response.start", "status": 200, "headers": events})
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    assert connection.writes == [head]
    await answer.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await answer.send({"type": "http.response.body", "body": b""})

    assert connection.writes[1:] == [b"9\r\ndata: 1\n\n\r\n", b"0\r\n\r\n"]


async def test_a_head_request_gets_its_head_though_no_body_is_written() -> None:
    answer, connection = cycle("HEAD")

    await answer.send(SIZED)
    await answer.send({"type": "http.response.body", "body": b""})

    assert connection.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]
