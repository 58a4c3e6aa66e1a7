"""The database settings: a bounded connection pool on PostgreSQL, a private file on SQLite.

Under ASGI, Django runs each admin or management API request in a thread of
its own, and keeps database connections per thread. A connection kept for
reuse (CONN_MAX_AGE > 0) is therefore never reused: its thread ends with the
request and the connection stays open until the garbage collector happens to
reach it, so every request left one more idle connection on the server.

On PostgreSQL each process instead borrows from a psycopg pool of at most
`pool_size` connections: closing a connection at the end of a request (which
Django does when CONN_MAX_AGE is 0) hands it back, and a request that finds
the pool empty waits at most `pool_timeout` seconds, then fails like any
database outage. Processes × pool size is then the most one deployment opens.

SQLite (the embedded default) has many writers too: the admin's and the
management API's requests, the ledger writer and the in-process jobs. In its
default mode a transaction that read before it wrote could not wait for
another's write lock, and failed at once with "database is locked", a 503 to
its client. Transactions therefore take the write lock as they begin and wait
for it up to SQLITE_TIMEOUT seconds, and the file is in WAL mode, where
readers and the writer do not block each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

POSTGRESQL = "django.db.backends.postgresql"
SQLITE = "django.db.backends.sqlite3"
SQLITE_TIMEOUT = 20  # seconds a write waits for another's lock before it fails


def database_settings(url: str, *, pool_size: int, pool_timeout: float, conn_max_age: int) -> dict[str, Any]:
    """Django's DATABASES entry for `url`; `pool_size` 0 (or a database other than PostgreSQL) means no pool."""
    config: dict[str, Any] = {**dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)}
    if config["ENGINE"] == SQLITE:
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": SQLITE_TIMEOUT,
            "init_command": "PRAGMA journal_mode=WAL;",
            **config.get("OPTIONS", {}),
        }
        return config
    if config["ENGINE"] != POSTGRESQL or pool_size == 0:
        return config
    # Django refuses persistent connections with a pool: closing a connection is what returns it.
    config["CONN_MAX_AGE"] = 0
    config.setdefault("OPTIONS", {})["pool"] = {
        # An idle process holds no connection; one that was busy gives its extra ones back after max_idle.
        "min_size": 0,
        "max_size": pool_size,
        "timeout": pool_timeout,
    }
    return config


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file (and its directory) readable by this user alone, before SQLite does.

    SQLite would create it with the umask's mode, usually world-readable, and gives
    its journal and WAL files the mode of the database file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:  # made by an earlier version
            path.chmod(0o600)
