"""Two separate OS processes share their breakers through Redis: one's failures keep the other away.

Each process runs `RedisBreakers` on the same prefix and answers commands,
one JSON line each, on its standard input. Their clocks are the same fake
clock, moved by command, so a cooldown passes without waiting for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import IO, Any

import pytest
from django.conf import settings
from redis import Redis

from gateway.breakers import BreakerRules

pytestmark = pytest.mark.integration

REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
ROUTE = 41
RULES = BreakerRules(consecutive_failures=3, cooldown=30, half_open_probes=2)
SEEN_WITHIN = 1.0  # seconds one process may take to see the other's transition
START = 1_790_000_000.0

PROCESS = r"""
import asyncio, json, sys, time
from gateway.breakers import BreakerRules, RedisBreakers

async def main(url, prefix, rules):
    now = [float(sys.argv[4])]
    breakers = RedisBreakers(url, prefix=prefix, rules=BreakerRules(**json.loads(rules)), clock=lambda: now[0])
    await breakers.start()
    while not breakers.watching:
        await asyncio.sleep(0.005)
    print(json.dumps({"ready": True}), flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        route, answer = command.get("route"), None
        if command["do"] == "fail":
            for _ in range(command["times"]):
                breakers.record(route, "acme/gpt-4o", ok=False, reason="connection refused")
        elif command["do"] == "wait":  # until is_open says `open`: how long it took, or None past `within`
            started = time.monotonic()
            while breakers.is_open(route) != command["open"] and time.monotonic() - started < command["within"]:
                await asyncio.sleep(0.002)
            answer = time.monotonic() - started if breakers.is_open(route) == command["open"] else None
        elif command["do"] == "reset":
            await asyncio.to_thread(breakers.reset, route)
        elif command["do"] == "advance":
            now[0] += command["seconds"]
        elif command["do"] == "probe":
            answer = await asyncio.gather(*[breakers.acquire_probe(route) for _ in range(command["count"])])
        print(json.dumps({"answer": answer}), flush=True)
    await breakers.stop()

asyncio.run(main(*sys.argv[1:4]))
"""


class Process:
    def __init__(self, prefix: str) -> None:
        rules = json.dumps({"consecutive_failures": 3, "cooldown": 30, "half_open_probes": RULES.half_open_probes})
        command = [sys.executable, "-c", PROCESS, REDIS_URL, prefix, rules, str(START)]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._read() == {"ready": True}

    def send(self, do: str, **fields: Any) -> None:
        self._stdin.write(json.dumps({"do": do, "route": ROUTE, **fields}) + "\n")
        self._stdin.flush()

    def answer(self) -> Any:
        return self._read()["answer"]

    def ask(self, do: str, **fields: Any) -> Any:
        self.send(do, **fields)
        return self.answer()

    def stop(self) -> None:
        self._stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            assert self.process.stdout is not None
            self.process.stdout.close()

    @property
    def _stdin(self) -> IO[str]:
        assert self.process.stdin is not None
        return self.process.stdin

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the process ended (exit code {self.process.poll()})"
        return json.loads(line)


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"{settings.PORTICO_REDIS_PREFIX}-shared-breakers-{uuid.uuid4().hex}"
    yield prefix
    client = Redis.from_url(REDIS_URL)
    names = list(client.scan_iter(match=f"{prefix}:*"))
    if names:
        client.delete(*names)
    client.close()


@pytest.fixture
def processes(prefix: str) -> Iterator[tuple[Process, Process]]:
    first = Process(prefix)
    try:
        second = Process(prefix)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_one_process_failures_open_the_breaker_for_the_other_and_a_reset_closes_it_for_both(
    processes: tuple[Process, Process],
) -> None:
    failing, other = processes
    assert other.ask("wait", open=False, within=0) is not None
    failing.ask("fail", times=RULES.consecutive_failures)
    took = other.ask("wait", open=True, within=SEEN_WITHIN)
    assert took is not None, f"the other process did not see the breaker open within {SEEN_WITHIN} s"
    assert took < SEEN_WITHIN
    other.ask("reset")
    assert failing.ask("wait", open=False, within=SEEN_WITHIN) is not None


def test_only_the_configured_probes_are_granted_in_total_across_two_processes(
    processes: tuple[Process, Process],
) -> None:
    first, second = processes
    first.ask("fail", times=RULES.consecutive_failures)
    assert second.ask("wait", open=True, within=SEEN_WITHIN) is not None
    for process in processes:
        process.ask("advance", seconds=RULES.cooldown)
        assert process.ask("wait", open=False, within=0) is not None, "the cooldown is over: half-open"
    first.send("probe", count=5)  # both ask at once
    second.send("probe", count=5)
    grants = first.answer() + second.answer()
    assert grants.count(True) == RULES.half_open_probes
