"""`portico serve --workers 2` stopped as an orchestrator stops it, with one worker unable to act on its SIGTERM.

A stopped (SIGSTOP) worker cannot run its signal handler, as a worker that
missed its signal does not; uvicorn's own supervisor would wait for it
forever, holding the port and the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import PorticoServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

GRACE = 3.0


def _workers_of(parent: int) -> list[int]:
    """The worker processes of a supervisor: its children made by multiprocessing's spawn, not its resource tracker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def supervisors(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], PorticoServer]]:
    """Supervisors started on demand, each stopped, and any worker it left behind killed, at the end."""
    started: list[PorticoServer] = []

    def start() -> PorticoServer:
        env = {**server_env, "PORTICO_SHUTDOWN_GRACE": str(GRACE)}
        # At info, uvicorn's supervisor says when its health check restarts a worker (see below).
        server = PorticoServer(env=env, log_path=tmp_path / f"serve-{len(started)}.log", workers=2, log_level="info")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        workers = _workers_of(server.pid)
        server.stop()
        for pid in workers:  # a worker the supervisor left behind would hold the test database
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def _stop_with_one_worker_stopped(supervisor: PorticoServer) -> tuple[int, int, float]:
    """SIGTERM to the supervisor once one of its workers is stopped: the stopped worker, the other, and how long
    the supervisor took to exit."""
    deadline = time.monotonic() + 10
    while len(workers := _workers_of(supervisor.pid)) < 2:
        assert time.monotonic() < deadline, f"two workers did not start:\n{supervisor.log()}"
        time.sleep(0.1)
    stuck, other = workers
    os.kill(stuck, signal.SIGSTOP)
    os.kill(supervisor.pid, signal.SIGTERM)
    began = time.monotonic()
    process = supervisor.process
    try:
        process.wait(timeout=GRACE + 10)
    except subprocess.TimeoutExpired:
        os.kill(stuck, signal.SIGKILL)
        pytest.fail(f"the supervisor did not exit within {GRACE + 10:g} s of SIGTERM:\n{supervisor.log()}")
    return stuck, other, time.monotonic() - began


def test_a_worker_that_cannot_take_sigterm_is_killed_and_the_parent_exits(
    supervisors: Callable[[], PorticoServer],
) -> None:
    # uvicorn's supervisor pings each worker every half second and waits up to 5 s for its answer. A worker
    # stopped while it is being pinged is killed by that health check (and a new one started) before the
    # supervisor reads its SIGTERM: it exits all the same, but the grace's kill is not what this test would have
    # seen. So such a try is made again, on a new supervisor.
    for _ in range(3):
        supervisor = supervisors()
        stuck, other, took = _stop_with_one_worker_stopped(supervisor)
        assert _gone(stuck)
        assert _gone(other)
        if f"Child process [{stuck}] died" not in supervisor.log():
            break
    else:
        pytest.fail("uvicorn's health check took the stopped worker in each of three tries")
    log = supervisor.log()
    assert GRACE - 0.5 <= took < GRACE + 10
    assert f"Worker [{stuck}] did not stop within" in log
    assert f"Worker [{other}] did not stop" not in log
