"""Stopping the workers of `portico serve --workers N`: real children that take SIGTERM, miss it once, or ignore it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

import pytest

from gateway.supervisor import RESEND_AFTER, stop_workers

CONTEXT = multiprocessing.get_context("fork")


@dataclass
class Held:
    process: BaseProcess

    @property
    def pid(self) -> int | None:
        return self.process.pid


def _takes_sigterm(ready: Event) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ready.set()
    while True:
        time.sleep(1)


def _misses_the_first_sigterm(ready: Event) -> None:
    seen: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        seen.append(signum)
        if len(seen) == 2:
            os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    ready.set()
    while True:
        time.sleep(0.05)


def _ignores_sigterm(ready: Event) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    while True:
        time.sleep(1)


@pytest.fixture
def start() -> Iterator[Callable[[Callable[[Event], None]], Held]]:
    started: list[Held] = []

    def start(target: Callable[[Event], None]) -> Held:
        ready = CONTEXT.Event()
        process = CONTEXT.Process(target=target, args=(ready,), daemon=True)
        process.start()
        assert ready.wait(10), "the child did not start"
        held = Held(process)
        started.append(held)
        return held

    yield start
    for held in started:  # whatever a failed test left running
        if held.process.is_alive():
            held.process.kill()
            held.process.join()


def _term(*held: Held) -> None:
    for one in held:
        assert one.pid is not None
        os.kill(one.pid, signal.SIGTERM)


def test_workers_that_stop_on_sigterm_are_waited_for_and_not_killed(start: Callable[..., Held]) -> None:
    workers = [start(_takes_sigterm), start(_takes_sigterm)]
    _term(*workers)
    began = time.monotonic()
    stop_workers(workers, grace=30)
    assert time.monotonic() - began < RESEND_AFTER
    assert [worker.process.exitcode for worker in workers] == [-signal.SIGTERM, -signal.SIGTERM]


def test_a_worker_that_missed_its_sigterm_is_sent_another(start: Callable[..., Held]) -> None:
    missed, stopped = start(_misses_the_first_sigterm), start(_takes_sigterm)
    _term(missed, stopped)
    began = time.monotonic()
    stop_workers([missed, stopped], grace=4)
    took = time.monotonic() - began
    assert missed.process.exitcode == 0  # its own exit on the second SIGTERM, not the kill at the grace
    assert stopped.process.exitcode == -signal.SIGTERM
    assert 2 - 0.1 <= took < 4  # resent at half the grace, which is sooner than RESEND_AFTER here


def test_a_worker_that_ignores_sigterm_is_killed_when_the_grace_runs_out(start: Callable[..., Held]) -> None:
    stubborn = start(_ignores_sigterm)
    _term(stubborn)
    began = time.monotonic()
    stop_workers([stubborn], grace=1.5)
    took = time.monotonic() - began
    assert stubborn.process.exitcode == -signal.SIGKILL
    assert 1.5 <= took < 5


def test_the_grace_is_counted_from_the_call_on_the_given_clock(start: Callable[..., Held]) -> None:
    stubborn = start(_ignores_sigterm)
    _term(stubborn)
    ticks = iter([0.0, 0.0, 100.0])
    stop_workers([stubborn], grace=30, clock=lambda: next(ticks), poll=0.01)
    assert stubborn.process.exitcode == -signal.SIGKILL
