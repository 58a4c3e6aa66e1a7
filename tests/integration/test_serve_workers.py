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
from collections.abc import Iterator
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
def supervisor(server_env: dict[str, str], tmp_path: Path) -> Iterator[PorticoServer]:
    env = {**server_env, "PORTICO_SHUTDOWN_GRACE": str(GRACE)}
    server = PorticoServer(env=env, log_path=tmp_path / "serve.log", workers=2)
    server.start()
    try:
        yield server
    finally:
        workers = _workers_of(server.pid)
        server.stop()
        for pid in workers:  # a worker the supervisor left behind would hold the test database
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_that_cannot_take_sigterm_is_killed_and_the_parent_exits(supervisor: PorticoServer) -> None:
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
    took = time.monotonic() - began
    assert GRACE - 0.5 <= took < GRACE + 10
    assert _gone(stuck)
    assert _gone(other)
    assert f"Worker [{stuck}] did not stop within" in supervisor.log()
    assert f"Worker [{other}] did not stop" not in supervisor.log()
