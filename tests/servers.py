"""Portico under a real ASGI server, as a child process of the test run.

The child inherits the test process's environment (REDIS_URL, SECRET_KEY, the
data directory) with a few overrides from the caller: the test database's
URL, so the rows a test commits are the rows it serves, and the Redis prefix
on which the test process announces those rows while a test runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from openai import AsyncOpenAI, OpenAI

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A cold start (Django set-up, first snapshot) takes about a second; a loaded CI machine may take longer.
START_TIMEOUT = 30.0
# The servers run with a small body limit, so the 413 test need not send megabytes.
MAX_BODY_BYTES = 64 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configured_database_name() -> str:
    """The database DATABASE_URL names, before any test database replaces it."""
    return urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")


def database_url_for(name: str) -> str:
    """The test process's DATABASE_URL with the database name replaced (by the test database's)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


# The `settle` fixture: called with servers (default: the session's one), returns once they see every commit.
Settle = Callable[..., None]


class ServerFailed(RuntimeError):
    pass


class ServerExited(ServerFailed):
    pass


class PorticoServer:
    """One Portico server process on a free port, started as production starts it (gateway.server).

    `preexec_fn` runs in the child before it starts, e.g. to lower its open files limit. With `workers` over 1
    the child is the supervisor of that many worker processes. `log_level` is uvicorn's.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        log_path: Path,
        preexec_fn: Callable[[], None] | None = None,
        workers: int = 1,
        log_level: str = "warning",
    ) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_level = log_level
        self.log_path = log_path
        self.preexec_fn = preexec_fn
        self.workers = workers
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not started"
        return self._process.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "the server is not started"
        return self._process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    # --- lifecycle ---

    def start(self, *, attempts: int = 3) -> None:
        # The free port is found by binding and releasing it, so another process may take it before
        # uvicorn binds it; the server then exits at once, and trying another port is all it takes.
        for attempt in range(1, attempts + 1):
            self._spawn(free_port())
            try:
                self._wait_until_serving()
                return
            except ServerExited:
                if attempt == attempts:
                    raise

    def _spawn(self, port: int) -> None:
        self.port = port
        command = [sys.executable, "-m", "gateway.server", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-level", self.log_level, "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.preexec_fn,  # noqa: PLW1509 - only a setrlimit, before exec
            )
        if self._http is not None:
            self._http.close()
        self._http = httpx.Client(base_url=self.base_url, timeout=5)

    def _wait_until_serving(self) -> None:
        assert self._process is not None
        assert self._http is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerExited(f"Portico exited with {self._process.returncode} on start:\n{self.log()}")
            try:
                # Unauthenticated, so 401 is the answer of a server that is up and has its snapshot.
                if self._http.get("/v1/models").status_code == 401:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise ServerFailed(f"Portico did not answer within {START_TIMEOUT:g} s:\n{self.log()}")

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._process is None or self._process.poll() is not None:
            return
        self.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting: `stop()` waits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    # --- talking to it ---

    def client(self, key: str, **options: Any) -> OpenAI:
        """The official sync SDK pointed at this server; close it (or use it as a context manager)."""
        options.setdefault("timeout", 10)
        return OpenAI(base_url=self.url("/v1"), api_key=key, max_retries=0, **options)

    def async_client(self, key: str, **options: Any) -> AsyncOpenAI:
        options.setdefault("timeout", 10)
        return AsyncOpenAI(base_url=self.url("/v1"), api_key=key, max_retries=0, **options)

    @property
    def http(self) -> httpx.Client:
        """A plain HTTP client for what the SDK cannot send (no key, bad JSON, odd headers)."""
        assert self._http is not None, "the server is not started"
        return self._http

    def status_with(self, key: str) -> int:
        return self.http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

    def wait_for_status(self, key: str, status: int, *, deadline: float) -> float:
        """Poll until a request with `key` gets `status`; the time.monotonic() it did, or ServerFailed at `deadline`."""
        while True:
            if self.status_with(key) == status:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise ServerFailed(f"a request with the key did not get {status} in time")
            time.sleep(0.01)


def serving(env: Mapping[str, str], log_path: Path) -> Iterator[PorticoServer]:
    """A started server for a fixture to yield from, stopped when the fixture ends (or the generator is closed).

    Servers are stopped before the test database is dropped, which cannot happen while they are connected.
    """
    server = PorticoServer(env=env, log_path=log_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def serving_several(env: Mapping[str, str], log_paths: Sequence[Path]) -> Iterator[list[PorticoServer]]:
    """`serving` for several servers of one deployment, started side by side and stopped side by side.

    Each start is seconds of imports: four started one after the other took a fixture close to a minute.
    """
    servers = [PorticoServer(env=env, log_path=path) for path in log_paths]
    try:
        for server in servers:
            server._spawn(free_port())
        for server in servers:
            try:
                server._wait_until_serving()
            except ServerExited:
                server.start()  # another process took its port first: start() tries another
        yield servers
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()
