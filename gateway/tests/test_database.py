from __future__ import annotations

import stat

from django.db import IntegrityError, OperationalError
from rest_framework.exceptions import NotAuthenticated

from gateway.database import SQLITE_TIMEOUT, database_settings, private_sqlite_file
from gateway.management_errors import exception_handler

POSTGRES = "postgres://portico@127.0.0.1:5432/portico"


def test_it_pools_postgres_connections_and_closes_each_at_the_end_of_its_request():
    config = database_settings(POSTGRES, pool_size=7, pool_timeout=2.5, conn_max_age=60)

    assert config["OPTIONS"]["pool"] == {"min_size": 0, "max_size": 7, "timeout": 2.5}
    assert config["CONN_MAX_AGE"] == 0


def test_it_keeps_the_options_given_in_the_url_beside_the_pool():
    config = database_settings(POSTGRES + "?sslmode=require", pool_size=3, pool_timeout=1.0, conn_max_age=0)

    assert config["OPTIONS"]["sslmode"] == "require"
    assert config["OPTIONS"]["pool"]["max_size"] == 3


def test_a_pool_size_of_zero_turns_the_pool_off():
    config = database_settings(POSTGRES, pool_size=0, pool_timeout=1.0, conn_max_age=30)

    assert "pool" not in config.get("OPTIONS", {})
    assert config["CONN_MAX_AGE"] == 30


def test_sqlite_has_no_pool(tmp_path):
    config = database_settings(f"sqlite:///{tmp_path / 'db.sqlite3'}", pool_size=10, pool_timeout=1.0, conn_max_age=0)

    assert "pool" not in config.get("OPTIONS", {})


def test_a_sqlite_connection_made_with_them_is_in_wal_mode_and_begins_immediate(tmp_path, django_db_blocker):
    from django.db.backends.sqlite3.base import DatabaseWrapper

    config = database_settings(f"sqlite:///{tmp_path / 'db.sqlite3'}", pool_size=0, pool_timeout=1.0, conn_max_age=0)
    wrapper = DatabaseWrapper({**config, "TIME_ZONE": None, "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False})
    with django_db_blocker.unblock():  # a database of its own, beside the test database
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode")
                assert cursor.fetchone() == ("wal",)
            assert wrapper.transaction_mode == "IMMEDIATE"  # Django begins each transaction taking the write lock
            assert wrapper.connection.execute("PRAGMA busy_timeout").fetchone() == (SQLITE_TIMEOUT * 1000,)
        finally:
            wrapper.close()


def test_it_creates_the_sqlite_file_and_its_directory_for_this_user_alone(tmp_path):
    path = tmp_path / "data" / "portico.sqlite3"

    private_sqlite_file(path)

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_it_makes_a_world_readable_sqlite_file_private_and_keeps_its_contents(tmp_path):
    path = tmp_path / "portico.sqlite3"
    path.write_bytes(b"rows")
    path.chmod(0o644)

    private_sqlite_file(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"rows"


def test_the_management_api_answers_an_unreachable_database_with_a_json_503():
    response = exception_handler(OperationalError("too many connections for role"), {})

    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert b'"code":"database_unavailable"' in response.content
    assert b"too many" not in response.content


def test_other_database_errors_stay_unhandled_there():
    assert exception_handler(IntegrityError("duplicate key"), {}) is None


def test_drf_errors_still_get_drfs_answer():
    response = exception_handler(NotAuthenticated(), {})

    assert response is not None
    assert response.status_code == 401
