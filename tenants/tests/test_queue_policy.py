"""A tenant's queue policy, and a key's own: in the snapshot, in the management API, in the admin console.

The operator sets it; a tenant admin reads it for their tenant only (globex's
`outsider` is a 404 to acme's admin); anyone else is refused.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client

from tenants.facade import QUEUE_OFF, QueuePolicy, load_key_grants
from tenants.models import ApiKey, Tenant, TenantRole
from tenants.services import membership_create, queue_policy_set
from tenants.tests.factories import IssuedKey, management_token_headers

pytestmark = pytest.mark.django_db


def _headers(*, staff: bool = False, admin_of: tuple[Tenant, ...] = ()) -> dict[str, str]:
    user = get_user_model().objects.create_user(username=f"user-{get_user_model().objects.count()}", is_staff=staff)
    for tenant in admin_of:
        membership_create(tenant=tenant, user=user, role=TenantRole.ADMIN)
    return management_token_headers(user)


def _grant(key: IssuedKey) -> QueuePolicy:
    return load_key_grants()[key.api_key.prefix].queue


def test_keys_queue_nothing_until_an_operator_says_so(owner: IssuedKey) -> None:
    assert _grant(owner) is QUEUE_OFF


def test_a_key_takes_its_tenant_s_policy_and_overrides_what_it_sets_itself(
    tenant: Tenant, owner: IssuedKey, teammate: IssuedKey, outsider: IssuedKey
) -> None:
    queue_policy_set(owner=tenant, queue_mode="wait", queue_max_wait=20, queue_max_depth=50)
    queue_policy_set(owner=teammate.api_key, queue_mode="both", queue_max_wait=5)

    assert _grant(owner) == QueuePolicy(mode="wait", max_wait=20.0, max_depth=50)
    assert _grant(teammate) == QueuePolicy(mode="both", max_wait=5.0, max_depth=50)
    assert _grant(outsider) is QUEUE_OFF
    assert _grant(owner).waits
    assert not _grant(owner).defers
    assert _grant(teammate).defers


def test_an_operator_sets_a_tenant_s_policy_and_its_admin_reads_it(client: Client, tenant: Tenant) -> None:
    operator = _headers(staff=True)

    changed = client.patch(
        f"/api/tenants/{tenant.pk}/queue/",
        {"queue_mode": "async", "queue_max_wait": 120},
        content_type="application/json",
        headers=operator,
    )

    assert changed.status_code == 200, changed.content
    assert changed.json() == {"queue_mode": "async", "queue_max_wait": 120, "queue_max_depth": 100}
    tenant.refresh_from_db()
    assert (tenant.queue_mode, tenant.queue_max_wait) == ("async", 120)
    read = client.get(f"/api/tenants/{tenant.pk}/queue/", headers=_headers(admin_of=(tenant,)))
    assert read.json()["queue_mode"] == "async"
    assert client.get(f"/api/tenants/{tenant.pk}/", headers=operator).json()["queue_mode"] == "async"


def test_a_tenant_admin_may_not_change_the_policy_nor_see_another_tenant_s(
    client: Client, tenant: Tenant, owner: IssuedKey, outsider: IssuedKey
) -> None:
    admin = _headers(admin_of=(tenant,))

    refused = client.patch(
        f"/api/keys/{owner.api_key.pk}/queue/", {"queue_mode": "wait"}, content_type="application/json", headers=admin
    )
    hidden = client.get(f"/api/keys/{outsider.api_key.pk}/queue/", headers=admin)
    stranger = client.get(f"/api/tenants/{tenant.pk}/queue/", headers=_headers())

    assert refused.status_code == 403
    assert hidden.status_code == 404
    assert stranger.status_code == 403
    owner.api_key.refresh_from_db()
    assert owner.api_key.queue_mode == ""


def test_a_key_s_policy_is_checked_and_can_go_back_to_its_tenant_s(client: Client, owner: IssuedKey) -> None:
    operator = _headers(staff=True)
    url = f"/api/keys/{owner.api_key.pk}/queue/"

    wrong = client.patch(
        url, {"queue_mode": "sometimes", "queue_max_wait": 0}, content_type="application/json", headers=operator
    )
    set_ = client.patch(
        url, {"queue_mode": "wait", "queue_max_wait": 10}, content_type="application/json", headers=operator
    )
    back = client.patch(
        url, {"queue_mode": "", "queue_max_wait": None}, content_type="application/json", headers=operator
    )

    assert wrong.status_code == 400
    assert set(wrong.json()) == {"queue_mode", "queue_max_wait"}
    assert set_.status_code == 200
    assert back.json() == {"queue_mode": "", "queue_max_wait": None, "queue_max_depth": None}
    assert ApiKey.objects.get(pk=owner.api_key.pk).queue_mode == ""


def test_the_console_edits_a_tenant_s_and_a_key_s_policy(client: Client, tenant: Tenant, owner: IssuedKey) -> None:
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))

    tenant_page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
    key_page = client.get(f"/admin/tenants/apikey/{owner.api_key.pk}/change/")
    listed = client.get("/admin/tenants/tenant/?queue_mode__exact=off")

    for page in (tenant_page, key_page):
        assert page.status_code == 200
        assert {"queue_mode", "queue_max_wait", "queue_max_depth"} <= set(page.context["adminform"].form.fields)
    assert tenant.name in listed.content.decode()
