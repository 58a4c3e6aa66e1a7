"""Lines in one process: only the head tries, a freed slot goes to it at once, tenants take turns, leavers leave.

The capacity here is a counter of slots the test frees by hand (`Slots`); the
line is a fresh `Lines` of this test's event loop, kept in the process.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.queueing.lines import Lines, take_turn

A, B = 1, 2


class Slots:
    """A resource with `free` slots; counts every try, so a test can tell a head from a herd."""

    def __init__(self, free: int = 0) -> None:
        self.free = free
        self.tries = 0

    async def attempt(self) -> float | None:
        self.tries += 1
        if self.free > 0:
            self.free -= 1
            return None
        return 5.0  # a long pause: only a freed slot (a nudge) makes the head try again soon

    def release(self, lines: Lines) -> None:
        self.free += 1
        lines.freed()


async def until(condition: object, *, seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(0.005)


async def test_a_freed_slot_goes_to_the_head_at_once_and_the_others_do_not_try() -> None:
    lines, slots = Lines(), Slots()
    line = lines.line("test", shared=False)
    deadline = asyncio.get_running_loop().time() + 5
    waiting = [
        asyncio.create_task(take_turn(line, flow=A, deadline=deadline, attempt=slots.attempt)) for _ in range(10)
    ]
    await until(lambda: slots.tries == 1)  # the head tried; nine others wait without trying

    started = asyncio.get_running_loop().time()
    slots.release(lines)
    await until(lambda: sum(task.done() for task in waiting) == 1)

    assert asyncio.get_running_loop().time() - started < 0.5  # not the 5 s the refusal asked for
    assert waiting[0].done()
    assert waiting[0].result() is True
    assert slots.tries <= 3
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_tenants_take_turns_for_freed_slots_whatever_the_order_they_came_in() -> None:
    lines, slots = Lines(), Slots()
    line = lines.line("test", shared=False)
    deadline = asyncio.get_running_loop().time() + 5
    served: list[str] = []

    async def wait(name: str, flow: int) -> None:
        await take_turn(line, flow=flow, deadline=deadline, attempt=slots.attempt)
        served.append(name)

    tasks = [asyncio.create_task(wait(f"a{n}", A)) for n in range(8)]
    await until(lambda: len(line.waiters) == 8)
    tasks += [asyncio.create_task(wait(f"b{n}", B)) for n in range(2)]
    await until(lambda: len(line.waiters) == 10)
    for _ in range(10):
        slots.release(lines)
        count = len(served)
        await until(lambda: len(served) == count + 1)  # noqa: B023 - read at once, in this iteration

    await asyncio.gather(*tasks)
    assert served[:4] == ["a0", "b0", "a1", "b1"]
    assert served[4:] == [f"a{n}" for n in range(2, 8)]


async def test_a_waiter_whose_client_left_is_out_of_the_line_at_once() -> None:
    lines, slots = Lines(), Slots()
    line = lines.line("test", shared=False)
    deadline = asyncio.get_running_loop().time() + 5
    first = asyncio.create_task(take_turn(line, flow=A, deadline=deadline, attempt=slots.attempt))
    second = asyncio.create_task(take_turn(line, flow=B, deadline=deadline, attempt=slots.attempt))
    await until(lambda: len(line.waiters) == 2)

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    assert len(line.waiters) == 1
    assert lines.depth(A) == 0
    slots.release(lines)
    assert await second is True  # the freed slot went to the one still waiting
    assert slots.free == 0
    await until(lambda: not lines.crowded("test"))


async def test_a_waiter_gives_up_at_its_deadline() -> None:
    lines, slots = Lines(), Slots()
    line = lines.line("test", shared=False)
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await take_turn(line, flow=A, deadline=started + 0.2, attempt=slots.attempt) is False

    assert 0.2 <= loop.time() - started < 1.0
    assert lines.depth(A) == 0
