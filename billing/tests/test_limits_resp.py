"""The limiter's own Redis connection: RESP in and out, replies in order, trouble as redis-py's errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

from billing.limits import resp
from billing.limits.resp import _INCOMPLETE, RespClient, Run, _Protocol, pack, parse
from billing.tests.test_limits import REDIS_URL


@pytest.mark.parametrize(
    "args",
    [("PING",), ("EVALSHA", "abc", 2, "k:1", "k:2", 1.5, -1, "", 10**12), ("SET", "a", b"\x00\r\n binary")],
)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    assert pack(args) == b"".join(Connection().pack_command(*args))


def test_equal_values_of_other_kinds_are_packed_apart_each_time() -> None:
    # 1 and 1.0 are one dict key; remembered segments must not mix them up, nor text beyond ASCII.
    args = ("EVAL", 1, 1.0, "1", "clé", "clé", 1, 1.0)
    for _ in range(3):
        assert pack(args) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize(
    "runs",
    [
        (("abc", 2, "k:1", "clé"), (30000.0, -1, b"\x00\r\n")),
        ((), ("one",)),
        ((1, 1.0, "1"), (Run(("nested", 2)), "after")),
    ],
)
def test_runs_are_packed_as_their_arguments_would_be(runs: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
    head, tail = runs
    flat = ("EVALSHA", *head, "", 7, *_flattened(tail))
    assert pack(("EVALSHA", Run(head), "", 7, Run(tail))) == b"".join(Connection().pack_command(*flat))


def _flattened(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(item for arg in args for item in (("nested", 2) if isinstance(arg, Run) else (arg,)))


def test_remembered_segments_stay_bounded() -> None:
    for n in range(3 * resp._SEGMENTS_MAX):
        assert pack(("GET", f"req_{n}", n)) == b"".join(Connection().pack_command("GET", f"req_{n}", n))
    assert len(resp._STR_SEGMENTS) <= resp._SEGMENTS_MAX
    assert len(resp._INT_SEGMENTS) <= resp._SEGMENTS_MAX


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", "OK"),
        (b":-42\r\n", -42),
        (b"$5\r\n1 2 3\r\n", b"1 2 3"),
        (b"$-1\r\n", None),
        (b"*2\r\n:1\r\n$1\r\nx\r\n", [1, b"x"]),
        (b"*-1\r\n", None),
    ],
)
def test_replies_are_read_whole(wire: bytes, value: Any) -> None:
    assert parse(bytearray(wire + b"+next\r\n")) == (value, len(wire))


@pytest.mark.parametrize("wire", [b"", b"+OK", b"$5\r\n1 2", b"*2\r\n:1\r\n", b"$5\r\n1 2 3\r"])
def test_a_reply_cut_short_waits_for_the_rest(wire: bytes) -> None:
    assert parse(bytearray(wire)) == (_INCOMPLETE, 0)


def test_errors_are_redis_pys_own() -> None:
    script_missing, _ = parse(bytearray(b"-NOSCRIPT No matching script.\r\n"))
    wrong, _ = parse(bytearray(b"-ERR wrong number of arguments\r\n"))

    assert isinstance(script_missing, NoScriptError)
    assert type(wrong) is ResponseError


async def test_concurrent_calls_get_their_own_replies_in_order() -> None:
    client = RespClient(REDIS_URL, timeout=1.0)
    try:
        replies = await asyncio.gather(*(client.call("ECHO", f"reply {n}") for n in range(50)))
        with pytest.raises(ResponseError):
            await client.call("NO-SUCH-COMMAND")
        after_an_error = await client.call("PING")
    finally:
        await client.aclose()

    assert replies == [f"reply {n}".encode() for n in range(50)]
    assert after_an_error == "PONG"


async def test_a_redis_that_is_not_there_is_a_connection_error() -> None:
    client = RespClient("redis://127.0.0.1:1/0", timeout=0.5)

    with pytest.raises(ConnectionRefusedError):  # an OSError, which the limiter treats as Redis being away
        await client.call("PING")


async def test_no_reply_in_time_drops_the_connection_and_the_next_call_opens_a_new_one() -> None:
    client = RespClient(REDIS_URL, timeout=0.2)
    try:
        await client.call("PING")
        first = client._protocol
        with pytest.raises(TimeoutError):
            await client.call("BLPOP", "portico-test-resp-never", 1)  # blocks past the timeout
        answer = await client.call("PING")
    finally:
        await client.aclose()

    assert first is not None
    assert first.closed
    assert client._protocol is not first
    assert answer == "PONG"


async def test_callers_behind_a_late_reply_are_told_the_connection_is_gone() -> None:
    client = RespClient(REDIS_URL, timeout=0.2)
    try:
        blocked = asyncio.ensure_future(client.call("BLPOP", "portico-test-resp-never", 1))
        await asyncio.sleep(0)  # written first: its reply is the one everything after it waits behind
        behind = asyncio.ensure_future(client.call("PING"))
        results = await asyncio.gather(blocked, behind, return_exceptions=True)
    finally:
        await client.aclose()

    assert isinstance(results[0], TimeoutError)
    assert isinstance(results[1], ConnectionError)


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[RespClient, _Protocol, list[bytes]]]:
    """An open client, its connection, and every write made on it from now on."""
    client = RespClient(REDIS_URL, timeout=1.0)
    try:
        await client.call("PING")  # opens the connection
        protocol = client._protocol
        assert protocol is not None
        writes: list[bytes] = []
        real_write = protocol.transport.write
        protocol.transport.write = lambda data: (writes.append(data), real_write(data))[1]
        yield client, protocol, writes
    finally:
        await client.aclose()


async def test_the_first_command_of_a_turn_goes_out_at_once_and_the_turns_others_in_one_write(
    recorded: tuple[RespClient, _Protocol, list[bytes]],
) -> None:
    client, _, writes = recorded
    replies = await asyncio.gather(*(client.call("ECHO", f"reply {n}") for n in range(20)))

    assert replies == [f"reply {n}".encode() for n in range(20)]
    first, *others = [pack(("ECHO", f"reply {n}")) for n in range(20)]
    assert writes == [first, b"".join(others)]


async def test_a_command_sent_soon_goes_out_when_the_step_ends_and_ahead_of_a_later_steps_commands(
    recorded: tuple[RespClient, _Protocol, list[bytes]],
) -> None:
    client, _, writes = recorded
    settled = client.send_soon("ECHO", "settle")
    assert settled is not None
    written_in_this_step = list(writes)  # what the rest of this step writes (an answer) comes first
    later = asyncio.ensure_future(client.call("ECHO", "next acquire"))  # a step that runs after this one
    assert await settled == b"settle"
    assert await later == b"next acquire"

    assert written_in_this_step == []
    assert writes == [pack(("ECHO", "settle")), pack(("ECHO", "next acquire"))]


async def test_commands_of_the_same_step_as_one_sent_soon_share_its_write_in_the_order_they_were_made(
    recorded: tuple[RespClient, _Protocol, list[bytes]],
) -> None:
    client, protocol, writes = recorded
    settled = client.send_soon("ECHO", "settle")
    assert settled is not None
    acquired = protocol.expect()  # a command made later in this step, as `call` makes it
    protocol.write(pack(("ECHO", "acquire")))
    assert (await settled, await acquired) == (b"settle", b"acquire")

    assert writes == [pack(("ECHO", "settle")) + pack(("ECHO", "acquire"))]


async def test_nothing_is_sent_soon_before_a_connection_is_open() -> None:
    client = RespClient(REDIS_URL, timeout=1.0)
    assert client.send_soon("PING") is None


@pytest.mark.parametrize(
    "when",
    ["before its reply came", "as its reply came, before it ran again", "after its reply came, before it ran again"],
)
async def test_a_reply_whose_caller_was_cancelled_goes_to_its_orphan_handler(when: str) -> None:
    client = RespClient(REDIS_URL, timeout=1.0)
    orphaned: list[Any] = []
    try:
        await client.call("PING")
        protocol = client._protocol
        assert protocol is not None
        caller = asyncio.create_task(client.call("ECHO", "mine", orphan=orphaned.append))
        await asyncio.sleep(0)  # written; its caller now waits for the reply
        read = protocol.data_received
        if when == "before its reply came":
            caller.cancel()
        elif when == "as its reply came, before it ran again":

            def cancel_then_read(data: bytes) -> None:
                caller.cancel()  # its waiter is cancelled; the caller learns of it only once it runs again
                read(data)

            protocol.data_received = cancel_then_read  # type: ignore[method-assign]
        else:

            def read_then_cancel(data: bytes) -> None:
                read(data)  # the reply is the caller's result; its task is woken but has not run yet
                caller.cancel()

            protocol.data_received = read_then_cancel  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(100):
            if orphaned:
                break
            await asyncio.sleep(0.01)
        assert orphaned == [b"mine"]
        protocol.data_received = read  # type: ignore[method-assign]
        assert await client.call("ECHO", "next") == b"next"  # replies still go to their own callers
        assert not protocol.orphans
    finally:
        await client.aclose()


async def test_an_error_reply_or_a_caller_that_was_not_cancelled_never_reaches_the_orphan_handler() -> None:
    client = RespClient(REDIS_URL, timeout=1.0)
    orphaned: list[Any] = []
    try:
        assert await client.call("ECHO", "kept", orphan=orphaned.append) == b"kept"
        caller = asyncio.create_task(client.call("NOSUCHCOMMAND", orphan=orphaned.append))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert await client.call("ECHO", "after") == b"after"  # the error reply has been read by now
    finally:
        await client.aclose()
    assert orphaned == []
