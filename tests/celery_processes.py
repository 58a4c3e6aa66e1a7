"""`portico worker` and `portico beat` as real child processes of the test run, with fixtures to start them.

    def test_it_runs_in_a_worker(start_worker):
        worker = start_worker(include=["tests.celery_tasks"])    # returns once the worker answers a ping
        enqueue("tests.celery_tasks.record", "k", "v")
        ...
        worker.kill()                                           # SIGKILL, the worker and its pool, mid-job

They run on the test database and the test Redis, as broker too. Their Redis
prefix (and so the broker's keys, see CELERY_BROKER_TRANSPORT_OPTIONS) is the
test process's own, which is unique to the run, so `gateway.background.enqueue`
in the test reaches them and no other run's. Any variable can be overridden
per process (`start_worker(PORTICO_CELERY_VISIBILITY_TIMEOUT="3")`); the
concurrency, queues, modules to import and further `celery worker` options
are arguments.

Each process is the leader of a process group of its own, so `kill()` takes
its pool processes down with it, as when a machine dies; `stop()` asks for a
warm shutdown (SIGTERM), then kills. Logs go to the test's tmp_path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.conf import settings

from tests.servers import PROJECT_ROOT, database_url_for

PORTICO = Path(sys.executable).with_name("portico")
# A worker sets Django up, imports every app's tasks and forks its pool: a couple of seconds, more on a busy machine.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class CeleryProcessFailed(RuntimeError):
    pass


class CeleryProcess:
    """One `portico worker` or `portico beat`, in a process group of its own."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.command = list(command)
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own command
                self.command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown: the jobs running finish (within `timeout`), then the process exits; else killed."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the process and every process of its group (its pool), at once, mid-job or not."""
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has exited already
        self._process.wait(timeout=STOP_TIMEOUT)

    def exited(self, what: str) -> CeleryProcessFailed:
        return CeleryProcessFailed(f"{what}: exited with {self._process and self._process.returncode}\n{self.log()}")


class CeleryWorker(CeleryProcess):
    def __init__(self, command: Sequence[str], *, env: Mapping[str, str], log_path: Path, hostname: str) -> None:
        super().__init__(command, env=env, log_path=log_path)
        self.hostname = hostname
        self._control = control_app(self.env)

    def ping(self) -> bool:
        return bool(self._control.control.ping(destination=[self.hostname], timeout=0.5))

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise self.exited("the worker")
            if self.ping():
                return
        raise CeleryProcessFailed(f"the worker did not answer a ping within {timeout:g} s:\n{self.log()}")

    def kill(self) -> None:
        super().kill()
        self._control.close()


def control_app(env: Mapping[str, str]) -> Celery:
    """A Celery app of the test process on the broker and keys of processes started with `env`."""
    broker = env.get("PORTICO_CELERY_BROKER_URL") or env["REDIS_URL"]
    prefix = env.get("PORTICO_REDIS_PREFIX", settings.PORTICO_REDIS_PREFIX)
    app = Celery("portico-test-control", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        broker_transport_options={"global_keyprefix": f"{prefix}:celery:"},
        broker_connection_retry_on_startup=True,
    )
    return app


# --- fixtures (registered in tests/conftest.py) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_env(test_database: str) -> Iterator[dict[str, str]]:
    """What workers and beat need besides the test process's environment; their broker keys go at the end."""
    yield {
        "DATABASE_URL": database_url_for(test_database),
        "PORTICO_LOG_LEVEL": "INFO",
        # The console script's directory comes first on its path, not the project's: `--include tests...` needs it.
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        for key in client.scan_iter(f"{settings.PORTICO_REDIS_PREFIX}:celery:*"):
            client.delete(key)


StartWorker = Callable[..., CeleryWorker]
StartBeat = Callable[..., CeleryProcess]


def worker_command(
    *, hostname: str, concurrency: int, queues: str, include: Sequence[str], options: Sequence[str]
) -> list[str]:
    command = [str(PORTICO), "worker", "--concurrency", str(concurrency), "--queues", queues, "-n", hostname]
    if include:
        command += ["--include", ",".join(include)]
    return command + list(options)


@pytest.fixture
def start_worker(celery_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Start a worker (stopped at the end of the test); returns once it answers a ping."""
    started: list[CeleryWorker] = []

    def start(
        *,
        concurrency: int = 1,
        queues: str = "interactive,default,batch",
        include: Sequence[str] = (),
        options: Sequence[str] = (),
        **env: str,
    ) -> CeleryWorker:
        hostname = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        command = worker_command(
            hostname=hostname, concurrency=concurrency, queues=queues, include=include, options=options
        )
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = CeleryWorker(command, env={**celery_env, **env}, log_path=log_path, hostname=hostname)
        started.append(worker)
        worker.start()
        worker.wait_until_ready()
        return worker

    yield start
    for worker in reversed(started):
        worker.stop()


@pytest.fixture
def start_beat(celery_env: dict[str, str], tmp_path: Path) -> Iterator[StartBeat]:
    """Start beat (stopped at the end of the test), its schedule file in tmp_path; returns once it has started."""
    started: list[CeleryProcess] = []

    def start(*, options: Sequence[str] = (), **env: str) -> CeleryProcess:
        schedule = tmp_path / f"beat-{len(started)}-schedule"
        command = [str(PORTICO), "beat", "--schedule", str(schedule), *options]
        beat = CeleryProcess(command, env={**celery_env, **env}, log_path=tmp_path / f"beat-{len(started)}.log")
        started.append(beat)
        beat.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while "beat: Starting" not in beat.log():
            if not beat.running:
                raise beat.exited("beat")
            if time.monotonic() > deadline:
                raise CeleryProcessFailed(f"beat did not start within {READY_TIMEOUT:g} s:\n{beat.log()}")
            time.sleep(0.05)
        return beat

    yield start
    for beat in reversed(started):
        beat.stop()
