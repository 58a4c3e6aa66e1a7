"""A private redis-server for tests that take Redis away from a running Portico and bring it back.

It keeps nothing on disk (`--save "" --appendonly no`), so a restart is a
Redis that has forgotten every counter, as after a crash. A restart reuses
the port, so the clients of the server under test find it where it was.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.servers import free_port

START_TIMEOUT = 10.0


class RedisServer:
    def __init__(self, *, log_path: Path) -> None:
        self.log_path = log_path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A client of this server; close it when done."""
        return redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        self._wait_until_answering()

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{self._log()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:g} s:\n{self._log()}")

    def _log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
