"""The ledger's spool: every line reaches the database once, whatever crashes or fails in between."""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, OperationalError, connections

from billing import ledger
from billing.alerts import PendingAlerts
from billing.ledger import LedgerEntry, LedgerWriter, Spool, drain, insert_records
from billing.models import UsageRecord

CREATED_AT = 1_790_000_000.25  # 2026-09-21, as Call.started_at holds it
# How long a background writer may take to do what a test waits for; it is done in milliseconds.
DEADLINE = 5.0


def entry(request_id: str, **fields: Any) -> dict[str, Any]:
    """A ledger line as billing.metering appends it."""
    line = LedgerEntry(
        request_id=request_id,
        client_request_id=f"client-{request_id}",
        created_at=CREATED_AT,
        tenant_id=7,
        api_key_id=11,
        key_prefix="pk-ab12",
        operation="chat",
        model="gpt-4o",
        provider="openai",
        upstream_model="gpt-4o-2024-08-06",
        prompt_tokens=12,
        completion_tokens=5,
        cached_tokens=2,
        reasoning_tokens=0,
        tokens_estimated=False,
        cost=Decimal("0.0000755000"),
        latency_ms=840,
        first_token_ms=120,
        status=200,
        error_type="",
        streamed=True,
        client_disconnected=False,
    )
    return {**line.row(), **fields}


def spool_file(directory: Path, name: str, request_ids: list[str]) -> Path:
    path = directory / name
    path.write_bytes(b"".join(orjson.dumps(entry(request_id)) + b"\n" for request_id in request_ids))
    return path


def sealed(directory: Path, request_ids: list[str]) -> Path:
    """A file as the writer seals it: appended by this process's spool, then renamed .ready."""
    spool = Spool(directory)
    for request_id in request_ids:
        spool.append(entry(request_id))
    spool.seal()
    [path] = directory.glob("*.ready")
    return path


def request_ids() -> list[str]:
    return sorted(UsageRecord.objects.values_list("request_id", flat=True))


def finished_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])  # noqa: S607 - coreutils' true, found on PATH
    process.wait()
    return process.pid


def wait_until(done: Callable[[], bool], *, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the ledger writer did not get there in time"
        time.sleep(0.01)


class FlakyInsert:
    """Refuses the first `failures` batches as a database that is down would, then inserts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, records: list[bytes]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")
        insert_records(records)


# --- the spool file ---


def test_it_appends_one_line_per_entry_to_a_file_of_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    spool.append(entry("req-1"))
    spool.append(entry("req-2"))

    [path] = tmp_path.iterdir()
    assert path.suffix == ".active"
    assert path.name.split("-")[1] == str(os.getpid())
    assert [orjson.loads(line)["request_id"] for line in path.read_bytes().splitlines()] == ["req-1", "req-2"]
    assert spool.pending == 2


def test_sealing_renames_the_file_ready_and_the_next_line_starts_a_new_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(entry("req-1"))

    spool.seal()
    spool.append(entry("req-2"))

    suffixes = sorted(path.suffix for path in tmp_path.iterdir())
    assert suffixes == [".active", ".ready"]
    assert spool.pending == 1


def test_sealing_an_empty_spool_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    spool.seal()

    assert list(tmp_path.iterdir()) == []


def drained_into(rows: list[bytes]) -> Callable[[list[bytes]], None]:
    """An insert function that keeps the drained lines in `rows` instead of a database."""
    return rows.extend


def drained_ids(rows: list[bytes]) -> list[str]:
    return [orjson.loads(row)["request_id"] for row in rows]


def drain_before_the_spool_locks(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """Run `action` once, as another process would, between the spool creating its next file and locking it."""
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the spool's blocking lock; a drain's is LOCK_NB
            monkeypatch.setattr(fcntl, "flock", real_flock)
            action()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)


def test_a_file_the_spool_is_opening_is_not_claimed_before_it_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    rows: list[bytes] = []
    drain_before_the_spool_locks(monkeypatch, lambda: drain(tmp_path, insert=drained_into(rows)))

    spool.append(entry("req-1"))

    [path] = tmp_path.iterdir()
    assert path.suffix == ".active"
    assert drained_ids(path.read_bytes().splitlines()) == ["req-1"]
    assert rows == []


def test_a_spool_whose_new_file_was_taken_as_stale_opens_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)

    def stall_for_minutes() -> None:
        [new] = tmp_path.iterdir()
        os.utime(new, (time.time() - 600, time.time() - 600))
        assert drain(tmp_path, insert=drained_into([])) == 0

    drain_before_the_spool_locks(monkeypatch, stall_for_minutes)

    spool.append(entry("req-1"))

    [path] = tmp_path.iterdir()
    assert path.suffix == ".active"
    assert drained_ids(path.read_bytes().splitlines()) == ["req-1"]


def test_a_new_file_a_dead_process_left_is_cleared_once_stale_and_a_fresh_one_is_left_alone(tmp_path: Path) -> None:
    stale = spool_file(tmp_path, f"{ledger._HOST}-{finished_pid()}-1790000000000000000-1.new", [])
    os.utime(stale, (time.time() - 120, time.time() - 120))
    fresh = spool_file(tmp_path, f"{ledger._HOST}-{finished_pid()}-1790000000000000001-1.new", [])

    assert drain(tmp_path, insert=drained_into([])) == 0

    assert list(tmp_path.iterdir()) == [fresh]


def test_a_spool_directory_that_cannot_be_written_holds_the_rows_until_it_can(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "ledger"
    directory.write_bytes(b"")  # a file where the directory should be
    spool = Spool(directory)

    with caplog.at_level(logging.WARNING, logger="billing.ledger"):
        spool.append(entry("req-1"))
        spool.append(entry("req-2"))
        spool.seal()
        assert len(spool.held) == 2
        directory.unlink()
        spool.seal()

    rows: list[bytes] = []
    drain(directory, insert=drained_into(rows))
    assert drained_ids(rows) == ["req-1", "req-2"]
    assert spool.held == []
    assert [(record.levelname, record.getMessage().split(" (")[0]) for record in caplog.records] == [
        ("ERROR", f"ledger spool {directory} cannot be written"),
        ("WARNING", f"ledger spool {directory} is writable again: 2 held row(s) written, 0 dropped"),
    ]


def test_a_full_disk_loses_no_row_and_repeats_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path)
    spool.append(entry("req-1"))
    assert spool._fd is not None
    full = os.open("/dev/full", os.O_WRONLY)  # every write(2) to it fails with ENOSPC
    os.dup2(full, spool._fd)
    os.close(full)

    with caplog.at_level(logging.WARNING, logger="billing.ledger"):
        spool.append(entry("req-2"))
        spool.append(entry("req-3"))
        spool.seal()

    rows: list[bytes] = []
    drain(tmp_path, insert=drained_into(rows))
    assert sorted(drained_ids(rows)) == ["req-1", "req-2", "req-3"]
    assert list(tmp_path.iterdir()) == []
    assert [record.getMessage() for record in caplog.records] == [
        f"ledger spool {tmp_path} cannot be written ([Errno 28] No space left on device); rows are held in memory",
        f"ledger spool {tmp_path} is writable again: 2 held row(s) written, 0 dropped",
    ]


def test_rows_beyond_what_memory_may_hold_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ledger, "_HELD_MAX", 2)
    directory = tmp_path / "ledger"
    directory.write_bytes(b"")
    spool = Spool(directory)

    with caplog.at_level(logging.ERROR, logger="billing.ledger"):
        for n in range(5):
            spool.append(entry(f"req-{n}"))

    assert (len(spool.held), spool.dropped) == (2, 3)
    assert caplog.records[-1].getMessage() == f"ledger spool {directory}: 2 rows are held in memory; more are dropped"


def test_a_row_that_cannot_be_encoded_is_dropped_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)

    with caplog.at_level(logging.ERROR, logger="billing.ledger"):
        spool.append(entry("req-1", cost=Decimal("0.1")))

    assert list(tmp_path.iterdir()) == []
    assert caplog.records[0].getMessage().startswith("ledger row req-1 cannot be encoded and was dropped")


# --- draining into the database ---


@pytest.mark.django_db
def test_sealed_lines_become_rows_with_every_field(tmp_path: Path) -> None:
    sealed(tmp_path, ["req-1", "req-2"])

    assert drain(tmp_path) == 2

    row = UsageRecord.objects.get(request_id="req-1")
    expected = entry("req-1")
    for name, value in expected.items():
        if name not in ("created_at", "cost", "provider_cost"):
            assert getattr(row, name) == value, name
    assert row.created_at.timestamp() == CREATED_AT
    assert row.cost == Decimal("0.0000755")
    assert request_ids() == ["req-1", "req-2"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_a_file_drained_twice_inserts_its_rows_once(tmp_path: Path) -> None:
    path = sealed(tmp_path, ["req-1", "req-2", "req-3"])
    # A crash between the commit and the unlink leaves the file behind, to be drained again.
    survivor = tmp_path.parent / "survivor"
    shutil.copy(path, survivor)
    drain(tmp_path)
    shutil.copy(survivor, path)

    assert drain(tmp_path) == 3

    assert request_ids() == ["req-1", "req-2", "req-3"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_a_line_cut_short_is_skipped_with_a_warning_and_the_rest_inserted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sealed(tmp_path, ["req-1", "req-2"])
    cut = orjson.dumps(entry("req-3"))[:40]
    with path.open("ab") as file:
        file.write(cut)

    with caplog.at_level(logging.WARNING, logger="billing.ledger"):
        assert drain(tmp_path) == 2

    assert request_ids() == ["req-1", "req-2"]
    assert [record.getMessage() for record in caplog.records] == [
        f"ledger spool {path.with_suffix('.claimed').name} line 3 is unreadable and was skipped"
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"], ids=["Postgres parses the batch", "Python parses it"])
def test_a_line_within_a_file_that_is_not_a_row_is_set_aside_and_the_others_inserted(
    vendor: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a file's last line is parsed before the insert (only it can be cut short); anything else that is
    # not a row, say a damaged disk block, is found by the insert, and costs the others nothing.
    monkeypatch.setattr(connections[UsageRecord.objects.db], "vendor", vendor)  # SQLite's way is the ORM's
    damaged = b'{"request_id": "req-2", "model": "gpt-'
    path = tmp_path / "host-1-1765000000000000000-1.ready"
    path.write_bytes(orjson.dumps(entry("req-1")) + b"\n" + damaged + b"\n" + orjson.dumps(entry("req-3")) + b"\n")

    with caplog.at_level(logging.ERROR, logger="billing.ledger"):
        assert drain(tmp_path) == 3

    assert request_ids() == ["req-1", "req-3"]
    [kept] = tmp_path.iterdir()
    assert kept.suffix == ".rejected"
    assert kept.read_bytes() == damaged + b"\n"
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("ledger row ? was rejected by the database")
    assert messages[1] == f"1 ledger row(s) the database rejected are kept in {kept}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("suffix", "owner_alive"),
    [
        pytest.param(".active", False, id="the active file of a process that is gone"),
        pytest.param(".claimed", False, id="a file a process that is gone was inserting"),
        pytest.param(".ready", True, id="a file a running process sealed"),
    ],
)
def test_it_claims_files_that_no_running_process_holds(tmp_path: Path, suffix: str, owner_alive: bool) -> None:
    pid = os.getppid() if owner_alive else finished_pid()
    path = spool_file(tmp_path, f"{ledger._HOST}-{pid}-1790000000000000000-1{suffix}", ["req-1"])

    assert drain(tmp_path) == 1

    assert request_ids() == ["req-1"]
    assert not path.exists()


OTHER_PROCESS = """
import sys
from pathlib import Path

import django
import orjson

django.setup()
from billing.ledger import Spool, drain


def hold(records):
    print("holding", flush=True)
    sys.stdin.read()


directory, action = Path(sys.argv[1]), sys.argv[2]
if action == "append":
    Spool(directory).append(orjson.loads(sys.argv[3]))
    hold([])
else:
    drain(directory, insert=hold)
"""


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start another Portico process on `tmp_path` that holds its files until killed.

    "append" spools req-1 and waits; "insert" claims the sealed files there and waits in the middle of inserting.
    """
    processes: list[subprocess.Popen[str]] = []

    def start(action: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", OTHER_PROCESS, str(tmp_path), action, orjson.dumps(entry("req-1")).decode()],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "gateway.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == "holding\n"
        return process

    yield start
    for process in processes:
        process.kill()
        process.communicate(timeout=10)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "suffix"),
    [
        pytest.param("append", ".active", id="the file a running process appends to"),
        pytest.param("insert", ".claimed", id="a file a running process is inserting"),
    ],
)
def test_the_files_of_a_running_process_are_claimed_only_once_it_was_killed(
    tmp_path: Path, other_process: Callable[[str], subprocess.Popen[str]], action: str, suffix: str
) -> None:
    if action == "insert":
        sealed(tmp_path, ["req-1"])
    process = other_process(action)
    [held] = tmp_path.iterdir()
    assert held.suffix == suffix

    assert drain(tmp_path) == 0
    process.kill()
    process.wait(timeout=10)

    assert drain(tmp_path) == 1
    assert request_ids() == ["req-1"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_this_process_keeps_the_file_it_is_appending_to(tmp_path: Path) -> None:
    Spool(tmp_path).append(entry("req-1"))

    assert drain(tmp_path) == 0

    assert [path.suffix for path in tmp_path.iterdir()] == [".active"]


@pytest.mark.django_db
def test_a_file_left_by_an_earlier_process_with_this_pid_is_claimed(tmp_path: Path) -> None:
    spool_file(tmp_path, f"{ledger._HOST}-{os.getpid()}-1790000000000000000-1.active", ["req-1"])

    assert drain(tmp_path) == 1


@pytest.mark.django_db
def test_names_that_are_not_spool_files_are_left_alone(tmp_path: Path) -> None:
    stray = spool_file(tmp_path, "notes.active", ["req-1"])

    assert drain(tmp_path) == 0

    assert stray.exists()


def test_draining_a_directory_that_does_not_exist_does_nothing(tmp_path: Path) -> None:
    assert drain(tmp_path / "missing") == 0


@pytest.mark.django_db
def test_a_database_error_leaves_the_file_to_be_retried(tmp_path: Path) -> None:
    sealed(tmp_path, ["req-1", "req-2"])

    with pytest.raises(OperationalError):
        drain(tmp_path, insert=FlakyInsert(failures=1))

    [waiting] = tmp_path.iterdir()
    assert waiting.suffix == ".ready"
    assert request_ids() == []
    assert drain(tmp_path) == 2
    assert request_ids() == ["req-1", "req-2"]


@pytest.mark.django_db
def test_a_commit_whose_acknowledgement_was_lost_is_not_inserted_twice(tmp_path: Path) -> None:
    sealed(tmp_path, ["req-1", "req-2"])

    def commit_then_lose_the_connection(records: list[bytes]) -> None:
        insert_records(records)
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        drain(tmp_path, insert=commit_then_lose_the_connection)

    assert drain(tmp_path) == 2
    assert request_ids() == ["req-1", "req-2"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.django_db
def test_a_row_the_database_rejects_does_not_hold_up_the_others(tmp_path: Path) -> None:
    path = sealed(tmp_path, ["req-1"])
    with path.open("ab") as file:
        file.write(orjson.dumps(entry("req-2", completion_tokens=-1)) + b"\n")

    drain(tmp_path)

    assert request_ids() == ["req-1"]
    assert not [path for path in tmp_path.iterdir() if path.suffix in (".ready", ".claimed")]


@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_insert_every_row_once(tmp_path: Path) -> None:
    ids = [f"req-{n:03}" for n in range(200)]
    for start in range(0, len(ids), 10):
        spool_file(tmp_path, f"{ledger._HOST}-1-{start}-1.ready", ids[start : start + 10])
    # Files inserted but not deleted before a crash: the same rows, under other names.
    for start in range(0, len(ids), 40):
        spool_file(tmp_path, f"{ledger._HOST}-1-{start}-2.ready", ids[start : start + 10])
    start_line = threading.Barrier(2)
    read: list[int] = []

    def drainer() -> None:
        try:
            start_line.wait()
            read.append(drain(tmp_path))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(read) == 250  # every file read by exactly one of them
    assert request_ids() == ids
    assert list(tmp_path.iterdir()) == []


# --- the writer thread ---


class ScriptedWake:
    """Stands in for the writer's wake-up event: records each wait's timeout, returns at once, stops after `rounds`."""

    def __init__(self, writer: LedgerWriter, rounds: int) -> None:
        self.writer = writer
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        if len(self.waits) == self.rounds:
            self.writer._stop.set()
        return False

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass


@pytest.fixture
def no_pending_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush also checks the budget alerts that earlier rows queued; rows drained by tests that ran before in
    this process would have this one check them."""
    monkeypatch.setattr(ledger, "alerts", PendingAlerts())


@pytest.mark.parametrize(
    ("interval", "failures", "waits"),
    [
        (0.5, 0, [0.5, 0.5, 0.5]),
        (0.5, 3, [0.5, 1.0, 2.0, 4.0, 0.5, 0.5]),
        (2.0, 4, [2.0, 4.0, 5.0, 5.0, 5.0, 2.0]),
    ],
)
# The database is reachable (a flush checks its connection first, which an earlier test may have opened); it is
# `drain` that is scripted to fail.
@pytest.mark.django_db
@pytest.mark.usefixtures("no_pending_alerts")
def test_the_writer_backs_off_while_the_database_refuses_and_resumes_its_pace_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interval: float, failures: int, waits: list[float]
) -> None:
    outcomes = iter([DatabaseError("the database is down")] * failures)

    def scripted_drain(directory: Path) -> int:
        failure = next(outcomes, None)
        if failure is not None:
            raise failure
        return 0

    monkeypatch.setattr(ledger, "drain", scripted_drain)
    writer = LedgerWriter(Spool(tmp_path), interval=interval, batch=100)
    wake = ScriptedWake(writer, rounds=len(waits))
    monkeypatch.setattr(writer, "_wake", wake)

    writer._run()

    assert wake.waits == waits


@pytest.mark.django_db
@pytest.mark.usefixtures("no_pending_alerts")
def test_the_writer_reports_an_outage_once_and_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = iter([DatabaseError("the database is down")] * 3)

    def scripted_drain(directory: Path) -> int:
        failure = next(outcomes, None)
        if failure is not None:
            raise failure
        return 0

    monkeypatch.setattr(ledger, "drain", scripted_drain)
    writer = LedgerWriter(Spool(tmp_path), interval=0.5, batch=100)

    with caplog.at_level(logging.WARNING, logger="billing.ledger"):
        flushed = [writer.flush() for _ in range(5)]

    assert flushed == [False, False, False, True, True]
    assert [(record.levelname, record.getMessage().split(" (")[0]) for record in caplog.records] == [
        ("ERROR", "ledger rows cannot reach the database"),
        ("WARNING", "ledger writes resumed after 0s"),
    ]


@pytest.fixture
def writer_factory(tmp_path: Path) -> Iterator[Callable[..., LedgerWriter]]:
    writers: list[LedgerWriter] = []

    def start(**options: Any) -> LedgerWriter:
        writer = LedgerWriter(Spool(tmp_path), **{"interval": 0.01, "batch": 100, **options})
        writers.append(writer)
        writer.start()
        return writer

    yield start
    for writer in writers:
        writer.stop()


@pytest.mark.django_db(transaction=True)
def test_rows_spooled_while_the_database_is_down_arrive_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_factory: Callable[..., LedgerWriter]
) -> None:
    flaky = FlakyInsert(failures=3)
    monkeypatch.setattr(ledger, "drain", partial(drain, insert=flaky))
    writer = writer_factory()

    writer.spool.append(entry("req-1"))
    writer.spool.append(entry("req-2"))

    wait_until(lambda: request_ids() == ["req-1", "req-2"])
    assert flaky.calls == 4
    wait_until(lambda: not any(tmp_path.iterdir()))


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_unexpected_error_does_not_stop_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_factory: Callable[..., LedgerWriter]
) -> None:
    outcomes = iter([PermissionError("the spool directory was made read-only")])

    def drain_after_a_failure(directory: Path) -> int:
        failure = next(outcomes, None)
        if failure is not None:
            raise failure
        return drain(directory)

    monkeypatch.setattr(ledger, "drain", drain_after_a_failure)
    writer = writer_factory()

    writer.spool.append(entry("req-1"))

    wait_until(lambda: request_ids() == ["req-1"], timeout=1.0)


@pytest.mark.django_db(transaction=True)
def test_a_full_batch_is_flushed_without_waiting_for_the_interval(
    tmp_path: Path, writer_factory: Callable[..., LedgerWriter]
) -> None:
    writer = writer_factory(interval=3600, batch=3)
    for n in range(3):
        writer.spool.append(entry(f"req-{n}"))

    writer.nudge()

    wait_until(lambda: len(request_ids()) == 3)


@pytest.mark.django_db(transaction=True)
def test_stopping_the_writer_flushes_what_was_spooled_last(
    tmp_path: Path, writer_factory: Callable[..., LedgerWriter]
) -> None:
    writer = writer_factory(interval=3600)
    writer.spool.append(entry("req-1"))

    writer.stop()

    assert request_ids() == ["req-1"]
    assert list(tmp_path.iterdir()) == []


# --- portico ledger_flush ---


@pytest.mark.django_db
def test_the_command_inserts_every_spooled_line(tmp_path: Path) -> None:
    sealed(tmp_path, ["req-1", "req-2"])
    spool_file(tmp_path, f"{ledger._HOST}-{finished_pid()}-1-1.active", ["req-3"])
    out = StringIO()

    call_command("ledger_flush", "--dir", str(tmp_path), stdout=out)

    assert out.getvalue() == f"3 ledger row(s) inserted from {tmp_path}.\n"
    assert request_ids() == ["req-1", "req-2", "req-3"]


@pytest.mark.django_db
def test_the_command_fails_loudly_and_keeps_the_lines_when_the_database_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing.management.commands import ledger_flush

    path = sealed(tmp_path, ["req-1"])
    monkeypatch.setattr(ledger_flush, "drain", partial(drain, insert=FlakyInsert(failures=1)))

    with pytest.raises(CommandError, match=f"they stay spooled in {tmp_path}"):
        call_command("ledger_flush", "--dir", str(tmp_path))

    assert path.exists()
    assert request_ids() == []


# --- one schema ----------------------------------------------------------------------------------


def test_the_insert_names_each_field_of_a_ledger_entry_and_each_is_a_usage_record_column() -> None:
    columns = {field.column for field in UsageRecord._meta.concrete_fields}

    assert [name for name, _kind in ledger._COLUMNS] == [field.name for field in dataclasses.fields(LedgerEntry)]
    assert {name for name, _kind in ledger._COLUMNS} <= columns


def test_every_column_the_ledger_leaves_out_has_a_database_default() -> None:
    # The insert names only the entry's columns: any other must be filled by the database itself.
    spooled = {name for name, _kind in ledger._COLUMNS}
    left_out = [
        field.column
        for field in UsageRecord._meta.concrete_fields
        if field.column not in spooled and not field.primary_key and not field.null and not field.has_db_default()
    ]

    assert left_out == []
