"""The usage ledger's hand-off: served requests are spooled to local files, then bulk-inserted.

The request path only appends one JSON line to this process's spool file (a
single `write(2)` on an O_APPEND descriptor, no fsync, no database, no
network). A writer thread seals the file every PORTICO_LEDGER_FLUSH seconds
and inserts sealed files in batches with `ON CONFLICT (request_id) DO
NOTHING`, deleting a file only once its rows are committed. So:

* Postgres down: sealed files wait and are retried; rows arrive when it returns.
* Redis down: the ledger does not use it.
* The process killed: the kernel has the appended lines; the next Portico
  process on the host (or `portico ledger_flush`) claims files whose owner
  is gone. A writer holds an flock on its open file, which the kernel drops
  when the process dies, so ownership survives pid reuse (a restarted
  container) and new hostnames (a re-created one sharing the volume). A line
  cut short by the kill is skipped with a warning.
* A row the database rejects (a count out of range): set aside in a
  .rejected file with an error logged, so it cannot hold up the rest.
* A file inserted twice (a crash between commit and delete): the request id
  is unique, so the second insert adds nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.db import DatabaseError, DataError, IntegrityError, connections, transaction

from billing.alerts import budget_alerts_check
from billing.models import UsageRecord

logger = logging.getLogger(__name__)

_NEW, _ACTIVE, _READY, _CLAIMED, _REJECTED = ".new", ".active", ".ready", ".claimed", ".rejected"
# File names are host-pid-stamp-serial.suffix, so the host part may hold neither "-" nor ".".
_HOST = socket.gethostname().replace("-", "_").replace(".", "_")


class Spool:
    """This process's append-only spool file, sealed and replaced by the writer thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._serial = 0
        self.pending = 0

    def append(self, entry: dict[str, Any]) -> None:
        line = orjson.dumps(entry) + b"\n"
        with self._lock:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            os.write(self._fd, line)
            self.pending += 1

    def _open(self) -> None:
        self._serial += 1
        new = self.directory / f"{_HOST}-{os.getpid()}-{time.time_ns()}-{self._serial}{_NEW}"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # Locked before it is named .active, so no drainer ever sees an active file without its owner's lock.
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._path = new.with_suffix(_ACTIVE)
        new.rename(self._path)
        self._fd = fd

    def seal(self) -> None:
        """Close the current file (if it holds anything) and mark it ready for insertion."""
        with self._lock:
            if self._fd is None or self.pending == 0:
                return
            fd, path = self._fd, self._path
            self._fd, self._path, self.pending = None, None, 0
        assert path is not None
        path.rename(path.with_suffix(_READY))  # still locked: nobody takes it for abandoned in between
        os.close(fd)


def _candidates(directory: Path) -> list[Path]:
    """Spool files by name (host-pid-stamp-serial.suffix), whoever holds them."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in (_NEW, _ACTIVE, _READY, _CLAIMED) and path.stem.count("-") == 3
    )


def _claim(path: Path) -> tuple[Path, int] | None:
    """Lock and rename a file to be ours, with the locked descriptor; None if its owner is alive or it is gone.

    The lock is held until the descriptor is closed: while this process inserts the file, nobody else claims it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stem = path.name.split(".")[0].split("-", 2)[-1]
        claimed = path.with_name(f"{_HOST}-{os.getpid()}-{stem}{_CLAIMED}")
        path.rename(claimed)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return claimed, fd


def _record(entry: dict[str, Any]) -> UsageRecord:
    fields = dict(entry)
    fields["created_at"] = datetime.fromtimestamp(fields["created_at"], UTC)
    fields["cost"] = Decimal(fields["cost"])
    return UsageRecord(**fields)


def _read(path: Path) -> list[tuple[UsageRecord, bytes]]:
    """The file's rows, each with the line it was read from."""
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            rows.append((_record(orjson.loads(line)), line))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Only the last line of a file whose writer was killed mid-write can be cut short.
            logger.warning("ledger spool %s line %d is unreadable and was skipped", path.name, number)
    return rows


Insert = Callable[[list[UsageRecord]], None]


def insert_records(records: list[UsageRecord]) -> None:
    with transaction.atomic():
        UsageRecord.objects.bulk_create(records, ignore_conflicts=True, batch_size=1000)
    budget_alerts_check(
        tenant_ids={r.tenant_id for r in records if r.tenant_id},
        key_ids={r.api_key_id for r in records if r.api_key_id},
    )


def _insert_each(path: Path, rows: list[tuple[UsageRecord, bytes]], insert: Insert) -> None:
    """Insert rows one by one, setting aside those the database rejects; a database that is down still raises."""
    rejected = []
    for record, line in rows:
        try:
            insert([record])
        except (DataError, IntegrityError) as exc:
            logger.error("ledger row %s was rejected by the database (%s)", record.request_id, exc)
            rejected.append(line + b"\n")
    if rejected:
        kept = path.with_suffix(_REJECTED)
        kept.write_bytes(b"".join(rejected))
        logger.error("%d ledger row(s) the database rejected are kept in %s", len(rejected), kept)


def drain(directory: Path, *, insert: Insert = insert_records) -> int:
    """Insert every claimable spool file; returns the rows read. A database error leaves the file for later."""
    if not directory.exists():
        return 0
    total = 0
    for path in _candidates(directory):
        claim = _claim(path)
        if claim is None:
            continue
        claimed, fd = claim
        try:
            rows = _read(claimed)
            try:
                if rows:
                    insert([record for record, _line in rows])
            except (DataError, IntegrityError):
                _insert_each(claimed, rows, insert)
            claimed.unlink()
        except BaseException:
            # Whatever went wrong, the file is left for a later drain, not stranded under this process's name.
            claimed.rename(claimed.with_suffix(_READY))
            raise
        finally:
            os.close(fd)
        total += len(rows)
    return total


class LedgerWriter:
    """The background thread that seals this process's spool and drains the directory."""

    def __init__(self, spool: Spool, *, interval: float, batch: int) -> None:
        self.spool = spool
        self.interval = interval
        self.batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None

    def nudge(self) -> None:
        if self.spool.pending >= self.batch:
            self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="portico-ledger", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        backoff = self.interval
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                flushed = self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure; the lines stay spooled
                logger.exception("ledger flush failed; the rows stay spooled and are retried")
                flushed = False
            backoff = self.interval if flushed else min(backoff * 2, 5.0)
            if stopping:
                return

    def flush(self) -> bool:
        """Seal and drain once; False if the database refused (the rows stay spooled)."""
        self.spool.seal()
        try:
            drain(self.spool.directory)
        except DatabaseError as exc:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.error("ledger rows cannot reach the database (%s); they stay spooled and are retried", exc)
            return False
        finally:
            connections.close_all()
        if self._failing_since is not None:
            logger.warning("ledger writes resumed after %.0fs", time.monotonic() - self._failing_since)
            self._failing_since = None
        return True
