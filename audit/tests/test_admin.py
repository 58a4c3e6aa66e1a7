"""The audit log's admin: read by operators, filtered, exported as CSV, and changed by no one."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.urls import reverse

from audit.context import Actor, AuditScope, audit_scope
from audit.models import AuditEntry
from providers.tests.factories import make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser() -> Client:
    web = Client()
    web.force_login(get_user_model().objects.create_superuser(username="root-admin", password="pw-not-used"))
    return web


def _recorded(actor: str, *names: str) -> list[AuditEntry]:
    scope = AuditScope(origin="admin", remote_addr="192.0.2.1", actor=lambda: Actor(label=actor, kind="user"))
    with audit_scope(scope):
        for name in names:
            make_provider(kind="mock", name=name)
    return list(AuditEntry.objects.filter(actor=actor).order_by("id"))


@pytest.fixture
def entry() -> AuditEntry:
    return _recorded("alice", "first")[0]


def test_the_list_shows_entries_and_filters_them_by_actor(superuser: Client, entry: AuditEntry) -> None:
    _recorded("bob", "second")

    response = superuser.get(reverse("admin:audit_auditentry_changelist"), {"actor": "alice"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "first" in page
    assert "second" not in page


def test_an_entry_page_shows_its_values_read_only(superuser: Client, entry: AuditEntry) -> None:
    response = superuser.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))

    assert response.status_code == 200
    assert "first" in response.content.decode()
    assert 'name="_save"' not in response.content.decode()


def test_not_even_a_superuser_may_add_change_or_delete_an_entry(superuser: Client, entry: AuditEntry) -> None:
    user = get_user_model().objects.get(username="root-admin")
    model_admin = _model_admin()
    request = type("Request", (), {"user": user})()

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)
    assert "delete_selected" not in model_admin.get_actions(_request_for(superuser))


def test_posts_to_change_delete_and_add_are_refused(superuser: Client, entry: AuditEntry) -> None:
    change = superuser.post(reverse("admin:audit_auditentry_change", args=[entry.pk]), {"actor": "mallory"})
    delete = superuser.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    add = superuser.post(reverse("admin:audit_auditentry_add"), {"actor": "mallory"})
    bulk = superuser.post(
        reverse("admin:audit_auditentry_changelist"), {"action": "delete_selected", "_selected_action": [entry.pk]}
    )

    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert bulk.status_code in {200, 302}
    assert AuditEntry.objects.get(pk=entry.pk).actor == "alice"
    assert AuditEntry.objects.count() == 1


def test_the_export_action_writes_the_selected_entries_as_csv(superuser: Client) -> None:
    entries = _recorded("carol", "one", "two", "three")

    response = superuser.post(
        reverse("admin:audit_auditentry_changelist"),
        {"action": "export_csv", "_selected_action": [entries[0].pk, entries[2].pk]},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["object"] for row in rows] == ["one", "three"]
    assert {(row["actor"], row["origin"], row["from"], row["action"]) for row in rows} == {
        ("carol", "admin", "192.0.2.1", "create")
    }
    assert rows[0]["model"] == "providers.provider"
    assert '"name": "one"' in rows[0]["after"]


def test_the_export_link_writes_every_entry_the_filters_select(superuser: Client) -> None:
    _recorded("dave", "kept-1", "kept-2")
    _recorded("erin", "left-out")

    response = superuser.get(reverse("admin:audit_auditentry_export"), {"actor": "dave"})

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sorted(row["object"] for row in rows) == ["kept-1", "kept-2"]


def test_the_list_links_to_the_export_with_its_filters(superuser: Client, entry: AuditEntry) -> None:
    response = superuser.get(reverse("admin:audit_auditentry_changelist"), {"actor": "alice"})

    assert f"{reverse('admin:audit_auditentry_export')}?actor=alice" in response.content.decode()


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(superuser: Client) -> None:
    _recorded("frank", "=HYPERLINK(1)")

    response = superuser.get(reverse("admin:audit_auditentry_export"), {"actor": "frank"})

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["object"] == "'=HYPERLINK(1)"


def test_staff_without_the_view_permission_cannot_export(entry: AuditEntry) -> None:
    web = Client()
    web.force_login(get_user_model().objects.create_user(username="staff", password="pw-not-used", is_staff=True))

    response = web.get(reverse("admin:audit_auditentry_export"))

    assert response.status_code == 403


def _model_admin() -> ModelAdmin[AuditEntry]:
    return admin.site._registry[AuditEntry]


def _request_for(web: Client) -> HttpRequest:
    request = RequestFactory().get("/admin/audit/auditentry/")
    request.user = get_user_model().objects.get(username="root-admin")
    return request
