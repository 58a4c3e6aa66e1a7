"""A Postgres role of a test's own, with a connection limit, for a server to connect as.

The limit is what lets a test watch, or exhaust, one server's connections
without touching anyone else's: Postgres counts the role's connections in
`pg_stat_activity` and refuses the role's next one past its limit with the
same error (too_many_connections) as a server at max_connections, while the
shared Postgres stays far below its own limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.db import connection


class LimitedRole:
    def __init__(self, name: str, admin_url: str) -> None:
        self.name = name
        self.admin_url = admin_url  # the test process's own (superuser) URL to the test database

    @property
    def database_url(self) -> str:
        """The test database's URL, as this role."""
        parts = urlsplit(self.admin_url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{self.name}@{host}"))

    def _admin(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        # A connection of its own: callable from any thread, outside Django's transaction handling.
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            cursor = admin.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def connections(self) -> int:
        [(count,)] = self._admin("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (self.name,))
        return int(str(count))

    def limit(self, count: int) -> None:
        self._admin(f'ALTER ROLE "{self.name}" CONNECTION LIMIT {int(count)}')

    def terminate(self, *, sparing: tuple[int, ...] = ()) -> None:
        """End every backend of this role but those whose pid is spared."""
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND NOT (pid = ANY(%s))",
            (self.name, list(sparing)),
        )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)


@contextmanager
def limited_role(admin_url: str, *, limit: int) -> Iterator[LimitedRole]:
    """A login role that may use the test database's tables, at most `limit` connections at once.

    Made through Django's connection (the test database's own); dropped afterwards
    with whatever privileges it was granted.
    """
    role = LimitedRole(f"portico_probe_{uuid.uuid4().hex[:12]}", admin_url)
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role.name}" LOGIN CONNECTION LIMIT {int(limit)}')
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role.name}"')
        cursor.execute(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{role.name}"')
    try:
        yield role
    finally:
        role.limit(0)
        role.terminate()
        with connection.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{role.name}"')
            cursor.execute(f'DROP ROLE "{role.name}"')
