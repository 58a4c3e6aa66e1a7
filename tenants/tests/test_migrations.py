"""Tenant admins become admin memberships, and back.

Rows are made with the historical models of the schema before the move, then
the migration runs forward (and backward) on the real database, as on an upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("tenants", "0007_queue_policy")]
AFTER = [("tenants", "0008_tenant_memberships")]

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(targets: list[tuple[str, str]]) -> Apps:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps() -> Iterator[Apps]:
    yield _migrate(BEFORE)
    # Leave the database as every other test expects it: fully migrated.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _admins(apps: Apps) -> set[tuple[str, str]]:
    Tenant: Any = apps.get_model("tenants", "Tenant")  # the historical model, which has `admins`
    return {(tenant.slug, user.username) for tenant in Tenant.objects.all() for user in tenant.admins.all()}


def _old_rows(apps: Apps) -> None:
    User = apps.get_model("auth", "User")
    Tenant: Any = apps.get_model("tenants", "Tenant")
    alice, bob, carol = (User.objects.create(username=name) for name in ("alice", "bob", "carol"))
    acme = Tenant.objects.create(name="Acme", slug="acme")
    globex = Tenant.objects.create(name="Globex", slug="globex")
    Tenant.objects.create(name="Initech", slug="initech")  # no admin at all
    acme.admins.set([alice, bob])
    globex.admins.set([bob])
    assert carol.pk is not None  # a user who administers nothing stays out of every tenant


def test_every_tenant_admin_becomes_an_admin_membership(old_apps: Apps) -> None:
    _old_rows(old_apps)

    apps = _migrate(AFTER)

    TenantMembership = apps.get_model("tenants", "TenantMembership")
    memberships = {(m.tenant.slug, m.user.username, m.role) for m in TenantMembership.objects.all()}
    assert memberships == {("acme", "alice", "admin"), ("acme", "bob", "admin"), ("globex", "bob", "admin")}
    assert "admins" not in {field.name for field in apps.get_model("tenants", "Tenant")._meta.get_fields()}


def test_going_back_makes_admin_memberships_admins_again_and_drops_the_other_roles(old_apps: Apps) -> None:
    _old_rows(old_apps)
    apps = _migrate(AFTER)
    TenantMembership = apps.get_model("tenants", "TenantMembership")
    Tenant = apps.get_model("tenants", "Tenant")
    User = apps.get_model("auth", "User")
    TenantMembership.objects.create(
        tenant=Tenant.objects.get(slug="initech"), user=User.objects.get(username="carol"), role="viewer"
    )
    TenantMembership.objects.filter(tenant__slug="acme", user__username="alice").update(role="member")

    restored = _migrate(BEFORE)

    assert _admins(restored) == {("acme", "bob"), ("globex", "bob")}
