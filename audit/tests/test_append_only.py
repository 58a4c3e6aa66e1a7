"""On PostgreSQL the table itself refuses to change or lose an entry, whatever the code does."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry() -> AuditEntry:
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only; SQLite relies on the admin and the code")
    return AuditEntry.objects.create(
        actor="alice", actor_kind="user", origin="admin", action="create", model_label="tenants.tenant", object_id="1"
    )


def test_an_update_is_refused(entry: AuditEntry) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor="mallory")

    assert AuditEntry.objects.get(pk=entry.pk).actor == "alice"


def test_a_delete_is_refused(entry: AuditEntry) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_plain_sql_is_refused_too(entry: AuditEntry) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET after = NULL WHERE id = %s", [entry.pk])


def test_entries_are_still_added(entry: AuditEntry) -> None:
    AuditEntry.objects.create(
        actor="bob", actor_kind="user", origin="api", action="delete", model_label="tenants.tenant", object_id="1"
    )

    assert AuditEntry.objects.count() == 2
