"""The usage ledger's hand-off: served requests are spooled to local files, then bulk-inserted.

The request path only appends one JSON line to this process's spool file (a
single `write(2)` on an O_APPEND descriptor, no fsync, no database, no
network). A writer thread seals the file every PORTICO_LEDGER_FLUSH seconds
and inserts sealed files in batches, skipping request ids the ledger
already holds, deleting a file only once its rows are committed.

A spool file's life, named host-pid-stamp-serial.suffix:

    .new      created by its spool, which then flocks it; no drain takes it, so nobody can claim
              it before its owner holds the lock (except one left by a process killed at that
              instant, taken once it is a minute old)
    .active   renamed from .new once locked; the owner appends to it
    .ready    sealed: renamed while still locked, then closed
    .claimed  a drain took the lock (so no owner holds it) and renamed it; deleted once inserted

A drain skips a file it cannot lock, and one that vanished or was replaced between
its open and its lock: another drain had it.

So:

* Postgres down: sealed files wait and are retried; rows arrive when it returns.
* Redis down: the ledger does not use it.
* The process killed: the kernel has the appended lines; the next Portico
  process on the host (or `portico ledger_flush`) claims files whose owner
  is gone. A writer holds an flock on its open file, which the kernel drops
  when the process dies, so ownership survives pid reuse (a restarted
  container) and new hostnames (a re-created one sharing the volume). A line
  cut short by the kill is skipped with a warning.
* The spool cannot be written (a full disk, no file descriptors left, the
  directory gone): the request is answered all the same; its row is held in
  this process's memory (up to _HELD_MAX rows, then dropped and counted) and
  written by the writer thread's next flush that succeeds. Only held rows
  are lost if the process dies before then; each outage is logged.
* A row the database rejects (a count out of range, or a line within a
  file that is not a row at all, which only a damaged disk could make):
  set aside in a .rejected file with an error logged, so it cannot hold up
  the rest.
* A file inserted twice (a crash between commit and delete): its rows are
  already there, so the second insert adds nothing.
* Two rows of one request with different arrival times (a queued job or a
  batch line run again, or failed, after its runner died while another
  process still held its first row): the first to commit is kept, as when
  `request_id` alone was unique. On PostgreSQL the ledger is partitioned by
  month of `created_at` (docs/ledger-partitions.md), and a unique constraint
  there must hold `created_at` too, so (request_id, created_at) is unique
  and the insert itself skips request ids already present, with inserts
  taking turns on a transaction lock so that none misses another's rows.

The module is longer than most: the spool, the claim, the insert and the
writer thread are one protocol, whose guarantees hold only if all four agree.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
from django.db import DatabaseError, DataError, IntegrityError, connections, transaction
from psycopg.types.json import Jsonb

from billing.alerts import PendingAlerts
from billing.models import UsageRecord

logger = logging.getLogger(__name__)

_NEW, _ACTIVE, _READY, _CLAIMED, _REJECTED = ".new", ".active", ".ready", ".claimed", ".rejected"
# File names are host-pid-stamp-serial.suffix, so the host part may hold neither "-" nor ".".
_HOST = socket.gethostname().replace("-", "_").replace(".", "_")
# A .new file is unlocked for a moment while its spool opens it; one older than this was left by a dead process.
_STALE_NEW = 60.0
# Rows kept in memory while the spool cannot be written: some 50 MB, minutes of a busy process's traffic.
_HELD_MAX = 100_000
# Held rows are written back this many to a write(2), so appenders wait on the lock for one chunk at a time.
_HELD_CHUNK = 1000


class Spool:
    """This process's append-only spool file, sealed and replaced by the writer thread.

    `append` never raises: the client's answer does not depend on the ledger's disk.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._serial = 0
        self.pending = 0
        self.held: list[bytes] = []  # lines a failed write left for the writer thread, in order
        self.dropped = 0
        self._failing = False

    def append(self, entry: dict[str, Any]) -> None:
        try:
            line = orjson.dumps(entry) + b"\n"
        except orjson.JSONEncodeError as exc:
            logger.error("ledger row %s cannot be encoded and was dropped (%s)", entry.get("request_id"), exc)
            return
        with self._lock:
            if self.held:  # behind the rows already waiting, and no syscall per request while the disk is failing
                self._hold(line)
                return
            try:
                self._write(line, rows=1)
            except OSError as exc:
                self._fail(exc)
                self._hold(line)

    def seal(self) -> None:
        """Write back held rows, then close the current file (if it holds anything) and mark it ready."""
        with self._lock:
            self._write_held()
            if self._fd is None or self.pending == 0:
                return
            fd, path = self._fd, self._path
            self._fd, self._path, self.pending = None, None, 0
        assert path is not None
        _retire(fd, path)

    def _write(self, data: bytes, *, rows: int) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
            if written != len(data):  # a disk that just filled takes part of the data
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            # The file may end in part of a line, which a drain skips: later lines go to a new file.
            fd, path = self._fd, self._path
            self._fd, self._path, self.pending = None, None, 0
            assert path is not None
            _retire(fd, path)
            raise
        self.pending += rows

    def _open(self) -> None:
        """Create a file under a name no drain takes, lock it, then name it .active."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self._serial += 1
            new = self.directory / f"{_HOST}-{os.getpid()}-{time.time_ns()}-{self._serial}{_NEW}"
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            active = new.with_suffix(_ACTIVE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                new.rename(active)
            except FileNotFoundError:
                # Taken as stale by a drain while this process stalled for a minute before locking it.
                os.close(fd)
                continue
            except OSError:
                os.close(fd)
                raise
            self._fd, self._path = fd, active
            return
        raise OSError(errno.ENOENT, "spool files vanish as they are created", str(self.directory))

    def _write_held(self) -> None:
        if not self.held:
            return
        written = 0
        while self.held:
            chunk = self.held[:_HELD_CHUNK]
            try:
                self._write(b"".join(chunk), rows=len(chunk))
            except OSError as exc:
                self._fail(exc)
                return
            del self.held[:_HELD_CHUNK]
            written += len(chunk)
        logger.warning(
            "ledger spool %s is writable again: %d held row(s) written, %d dropped",
            self.directory,
            written,
            self.dropped,
        )
        self._failing, self.dropped = False, 0

    def _hold(self, line: bytes) -> None:
        if len(self.held) < _HELD_MAX:
            self.held.append(line)
            return
        if not self.dropped:
            logger.error("ledger spool %s: %d rows are held in memory; more are dropped", self.directory, _HELD_MAX)
        self.dropped += 1

    def _fail(self, exc: OSError) -> None:
        if not self._failing:
            self._failing = True
            logger.error("ledger spool %s cannot be written (%s); rows are held in memory", self.directory, exc)


def _retire(fd: int, path: Path) -> None:
    """Rename a spool file ready, then close it; one that cannot be renamed is left to be claimed as abandoned."""
    try:
        path.rename(path.with_suffix(_READY))  # still locked: nobody takes it for abandoned in between
    except OSError as exc:
        logger.warning("ledger spool %s could not be sealed (%s); it is claimed as abandoned", path.name, exc)
    finally:
        os.close(fd)


def _candidates(directory: Path) -> list[Path]:
    """Spool files by name (host-pid-stamp-serial.suffix), whoever holds them; .new ones only when stale."""
    stale = time.time() - _STALE_NEW
    return sorted(
        path
        for path in directory.iterdir()
        if path.stem.count("-") == 3
        and (path.suffix in (_ACTIVE, _READY, _CLAIMED) or (path.suffix == _NEW and _modified_before(path, stale)))
    )


def _modified_before(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False


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
        # Between the open and the lock another drain may have claimed, inserted and deleted this file:
        # a lock on a file no longer at `path` is worth nothing.
        locked, named = os.fstat(fd), os.stat(path)
        if (locked.st_dev, locked.st_ino) != (named.st_dev, named.st_ino):
            raise FileNotFoundError(errno.ENOENT, "replaced", str(path))
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
    if "provider_cost" in fields:
        fields["provider_cost"] = Decimal(fields["provider_cost"])
    return UsageRecord(**fields)


def _read(path: Path) -> list[bytes]:
    """The file's lines (each one row's JSON), less a last line cut short.

    Only the last line can be cut short: the spool writes whole lines, one write(2) at a time, and a write
    that fails or falls short retires the file at once, so no line follows a cut one. The last is parsed to
    tell; the others go to the database unparsed (parsing each here was a quarter of the writer thread's
    CPU), and one that is not a ledger row after all fails the batch's insert, which then goes row by row
    and sets that one aside (`_insert_each`).
    """
    lines = path.read_bytes().splitlines()
    if lines and not _is_row(lines[-1]):
        # A process killed mid-write leaves its last line cut short.
        logger.warning("ledger spool %s line %d is unreadable and was skipped", path.name, len(lines))
        lines.pop()
    return lines


def _is_row(line: bytes) -> bool:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(entry, dict) and isinstance(entry.get("request_id"), str)


def _request_id(line: bytes) -> str:
    """A spooled line's request id, for a log line about it; '?' if it has none."""
    try:
        return str(orjson.loads(line)["request_id"])
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return "?"


Insert = Callable[[list[bytes]], None]


@dataclass(slots=True)
class LedgerEntry:
    """One ledger row as the hot path spools it: the one schema besides UsageRecord's, from which `_COLUMNS` comes.

    A column of UsageRecord that is not here is left to its database default. Not frozen: it lives for one
    append, and a frozen dataclass takes three times as long to build.
    """

    request_id: str
    client_request_id: str
    created_at: float  # epoch seconds, when the request arrived
    tenant_id: int
    api_key_id: int
    key_prefix: str
    operation: str
    model: str
    provider: str
    upstream_model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    tokens_estimated: bool
    cost: Decimal  # USD; spooled as a string, since JSON numbers are floats
    latency_ms: int
    first_token_ms: int | None
    status: int = field(metadata={"pg": "integer"})
    error_type: str
    streamed: bool
    client_disconnected: bool
    # The deployment that served and what its provider charges; the defaults are those of a call never sent.
    deployment_id: int | None = None
    deployment: str = ""
    attempts: int = 1
    provider_cost: Decimal = Decimal(0)
    batch_id: str | None = None  # the batch this call was a line of; None for a live request
    queue_ms: int | None = None  # what the call waited for capacity (in line, or as a queued job); None: no wait
    cache_creation_tokens: int = 0
    upstream_id: str = ""
    overhead_ms: int | None = None  # time spent in Portico itself, not waiting on the upstream

    def row(self) -> dict[str, Any]:
        """The spool's JSON object for this row."""
        values = dict(zip(_FIELDS, _values(self), strict=True))
        values["cost"] = str(self.cost)
        values["provider_cost"] = str(self.provider_cost)
        return values


_FIELDS = tuple(item.name for item in fields(LedgerEntry))
_values = operator.attrgetter(*_FIELDS)  # every field at once, in C: a row is built on every call
# Each field's type as Postgres reads it from the JSON batch (annotations are strings here: postponed evaluation).
_PG_TYPES = {
    "str": "text",
    "float": "float8",
    "int": "bigint",
    "int | None": "bigint",
    "str | None": "text",
    "bool": "boolean",
    "Decimal": "numeric",
}
# Postgres reads the batch itself, as one JSON array: no model instance or compiled row per line in Python,
# which on a busy process cost more CPU (and GIL) than serving the requests they record.
_COLUMNS = tuple((item.name, item.metadata.get("pg") or _PG_TYPES[str(item.type)]) for item in fields(LedgerEntry))
# Columns added after rows were first spooled: a line spooled by an older process lacks them, and gets the
# database's default instead of a NULL the column refuses.
_LATER_COLUMNS = {
    "deployment": "''",
    "attempts": "1",
    "provider_cost": "0",
    "cache_creation_tokens": "0",
    "upstream_id": "''",
}


def _selected(name: str) -> str:
    if name == "created_at":
        return "to_timestamp(r.created_at)"
    if name in _LATER_COLUMNS:
        return f"COALESCE(r.{name}, {_LATER_COLUMNS[name]})"
    return f"r.{name}"


_SELECTED = ", ".join(_selected(name) for name, _ in _COLUMNS)
_LEDGER = UsageRecord._meta.db_table
_NAMES = ", ".join(name for name, _ in _COLUMNS)
# Inserts take turns: a row committed by another insert while this one ran would be invisible to its check.
# Held to the end of the transaction, which is the insert alone.
_PG_TURN = "SELECT pg_advisory_xact_lock(hashtext('portico.ledger.insert'))"
# Built from the constants above only; the batch itself is the one query parameter. The first line of a request
# id in the batch is kept, in the batch's order; one the ledger holds in any month is left out, and the unique
# (request_id, created_at) is the database's own guard against the same row twice.
_PG_INSERT = (
    "WITH inserted AS ("  # noqa: S608
    f"INSERT INTO {_LEDGER} ({_NAMES}) "
    f"SELECT {_SELECTED} FROM ("
    "SELECT DISTINCT ON (request_id) * FROM ROWS FROM "
    f"(jsonb_to_recordset(%s::jsonb) AS ({', '.join(f'{name} {kind}' for name, kind in _COLUMNS)})) "
    f"WITH ORDINALITY AS b({_NAMES}, line) ORDER BY request_id, line"
    f") AS r WHERE NOT EXISTS (SELECT 1 FROM {_LEDGER} AS u WHERE u.request_id = r.request_id) ORDER BY r.line "
    "ON CONFLICT (request_id, created_at) DO NOTHING RETURNING tenant_id, api_key_id"
    # The owners whose budgets may now call for an alert, each once: a batch is mostly a few keys' rows.
    ") SELECT DISTINCT tenant_id, api_key_id FROM inserted"
)


def _as_is(batch: bytes) -> bytes:
    return batch


def insert_records(lines: list[bytes]) -> None:
    """Insert spooled rows in one statement, skipping request ids already in the ledger."""
    connection = connections[UsageRecord.objects.db]
    if connection.vendor == "postgresql":
        # A psycopg cursor that binds server-side: Django's quote the parameters into the statement, and
        # quoting a second's rows (a megabyte of JSON) cost five times the CPU of sending them. It runs in
        # Django's transaction and raises Django's errors; never prepared, for poolers in transaction mode.
        with transaction.atomic(), connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_PG_TURN, prepare=False)
            # The batch as the JSON the lines already are: no decoding to text for psycopg to encode again.
            cursor.execute(_PG_INSERT, [Jsonb(b"[" + b",".join(lines) + b"]", dumps=_as_is)], prepare=False)
            owners = cursor.fetchall()
    else:
        try:
            records = [_record(orjson.loads(line)) for line in lines]
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, ArithmeticError) as exc:
            # What Postgres's own parse of the batch raises for a line that is not a row: the rows go one by one.
            raise DataError(f"a spooled line is not a ledger row: {exc}") from exc
        # SQLite writers take turns already: one that read before another's commit fails to write, and retries.
        with transaction.atomic():
            UsageRecord.objects.bulk_create(_unrecorded(records), ignore_conflicts=True, batch_size=1000)
        owners = [(record.tenant_id, record.api_key_id) for record in records]
    alerts.add(owners)


def _unrecorded(records: list[UsageRecord]) -> list[UsageRecord]:
    """The first record of each request id the ledger does not hold yet (at whatever time it holds it)."""
    first: dict[str, UsageRecord] = {}
    for record in records:
        first.setdefault(record.request_id, record)
    ids = list(first)
    for start in range(0, len(ids), 500):  # within SQLite's limit on a statement's parameters
        chunk = ids[start : start + 500]
        for request_id in UsageRecord.objects.filter(request_id__in=chunk).values_list("request_id", flat=True):
            first.pop(request_id, None)
    return list(first.values())


alerts = PendingAlerts()


def _insert_each(path: Path, lines: list[bytes], insert: Insert) -> None:
    """Insert rows one by one, setting aside those the database rejects; a database that is down still raises."""
    rejected = []
    for line in lines:
        try:
            insert([line])
        except (DataError, IntegrityError) as exc:
            logger.error("ledger row %s was rejected by the database (%s)", _request_id(line), exc)
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
                    insert(rows)
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
                self._close()
                return

    def _close(self) -> None:
        if self.spool.held or self.spool.dropped:
            logger.error(
                "%d ledger row(s) could not be written to the spool before stopping and are lost",
                len(self.spool.held) + self.spool.dropped,
            )
        try:
            alerts.check()
        except DatabaseError:
            logger.warning("budget alerts could not be checked before stopping; the next process checks them")
        finally:
            connections.close_all()  # this thread's own connection; nothing else would close it

    def flush(self) -> bool:
        """Seal and drain once; False if the database refused (the rows stay spooled)."""
        self.spool.seal()
        # This thread keeps its connection between flushes (reconnecting twice a second cost more than the
        # inserts); one that broke or outlived CONN_MAX_AGE is replaced.
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        try:
            drain(self.spool.directory)
            alerts.check(due_only=True)
        except DatabaseError as exc:
            connections.close_all()
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.error("ledger rows cannot reach the database (%s); they stay spooled and are retried", exc)
            return False
        if self._failing_since is not None:
            logger.warning("ledger writes resumed after %.0fs", time.monotonic() - self._failing_since)
            self._failing_since = None
        return True
