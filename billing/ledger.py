"""The usage ledger's hand-off: served requests are spooled to local files, then bulk-inserted.

The request path only appends one JSON line to this process's spool file (a
single `write(2)` on an O_APPEND descriptor, no fsync, no database, no
network). A writer thread seals the file every PORTICO_LEDGER_FLUSH seconds
and inserts sealed files in batches with `ON CONFLICT (request_id) DO
NOTHING`, deleting a file only once its rows are committed. So:

* Postgres down: sealed files wait and are retried; rows arrive when it returns.
* Redis down: the ledger does not use it.
* The process killed: the kernel has the appended lines; the next Portico
  process on the host (or `portico ledger-flush`) claims files whose owner
  is gone. A line cut short by the kill is skipped with a warning.
* A file inserted twice (a crash between commit and delete): the request id
  is unique, so the second insert adds nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from django.db import DatabaseError, connections, transaction

from billing.alerts import budget_alerts_check
from billing.models import UsageRecord

logger = logging.getLogger(__name__)

_ACTIVE, _READY, _CLAIMED = ".active", ".ready", ".claimed"
# File names are host-pid-stamp-serial.suffix, so the host part may hold neither "-" nor ".".
_HOST = socket.gethostname().replace("-", "_").replace(".", "_")


def _owner(path: Path) -> tuple[str, int]:
    """The host and pid that wrote (or claimed) a spool file, from its name: host-pid-….suffix."""
    host, pid, *_ = path.name.split("-")
    return host, int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        stamp = f"{time.time_ns()}"
        self._path = self.directory / f"{_HOST}-{os.getpid()}-{stamp}-{self._serial}{_ACTIVE}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def seal(self) -> None:
        """Close the current file (if it holds anything) and mark it ready for insertion."""
        with self._lock:
            if self._fd is None or self.pending == 0:
                return
            fd, path = self._fd, self._path
            self._fd, self._path, self.pending = None, None, 0
        assert path is not None
        os.close(fd)
        path.rename(path.with_suffix(_READY))


def _claimable(directory: Path) -> Iterator[Path]:
    """Sealed files, and files left behind by processes of this host that are gone."""
    me = os.getpid()
    for path in sorted(directory.iterdir()):
        if path.suffix == _READY:
            yield path
        elif path.suffix in (_ACTIVE, _CLAIMED):
            try:
                host, pid = _owner(path)
            except ValueError:
                continue
            if host == _HOST and pid != me and not _alive(pid):
                yield path


def _claim(path: Path) -> Path | None:
    """Rename a file to be ours, atomically; None if another process got it first."""
    stem = path.name.split(".")[0].split("-", 2)[-1]
    claimed = path.with_name(f"{_HOST}-{os.getpid()}-{stem}{_CLAIMED}")
    try:
        path.rename(claimed)
    except FileNotFoundError:
        return None
    return claimed


def _record(entry: dict[str, Any]) -> UsageRecord:
    fields = dict(entry)
    fields["created_at"] = datetime.fromtimestamp(fields["created_at"], UTC)
    fields["cost"] = Decimal(fields["cost"])
    return UsageRecord(**fields)


def _read(path: Path) -> list[UsageRecord]:
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            records.append(_record(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Only the last line of a file whose writer was killed mid-write can be cut short.
            logger.warning("ledger spool %s line %d is unreadable and was skipped", path.name, number)
    return records


def insert_records(records: list[UsageRecord]) -> None:
    with transaction.atomic():
        UsageRecord.objects.bulk_create(records, ignore_conflicts=True, batch_size=1000)
    budget_alerts_check(
        tenant_ids={r.tenant_id for r in records if r.tenant_id},
        key_ids={r.api_key_id for r in records if r.api_key_id},
    )


def drain(directory: Path, *, insert: Callable[[list[UsageRecord]], None] = insert_records) -> int:
    """Insert every claimable spool file; returns the rows read. A database error leaves the file for later."""
    if not directory.exists():
        return 0
    total = 0
    for path in _claimable(directory):
        claimed = _claim(path)
        if claimed is None:
            continue
        records = _read(claimed)
        try:
            if records:
                insert(records)
        except DatabaseError:
            claimed.rename(claimed.with_suffix(_READY))
            raise
        claimed.unlink()
        total += len(records)
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
            backoff = self.interval if self.flush() else min(backoff * 2, 5.0)
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
