"""Changes made through the management API: the actor is the token (and its user) the view authenticated."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client

from audit.models import AuditEntry
from tenants.models import ApiKey, ManagementToken, Tenant
from tenants.tests.factories import IssuedKey, management_token_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_headers() -> dict[str, str]:
    user = get_user_model().objects.create_user(username="ops", is_staff=True)
    return management_token_headers(user)


def test_a_key_revoked_through_the_api_leaves_one_revoke_entry_naming_the_token(
    client: Client, owner: IssuedKey, operator_headers: dict[str, str]
) -> None:
    token = ManagementToken.objects.get(user__username="ops")

    response = client.post(
        f"/api/keys/{owner.api_key.pk}/revoke/", headers=operator_headers, REMOTE_ADDR="203.0.113.40"
    )

    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get()
    assert entry.actor == f"token {token.prefix}… of ops"
    assert (entry.actor_kind, entry.actor_user_id) == ("token", token.user_id)
    assert (entry.origin, entry.remote_addr) == ("api", "203.0.113.40")
    assert (entry.action, entry.model_label, entry.object_id) == ("revoke", "tenants.apikey", str(owner.api_key.pk))
    revoked_at = ApiKey.objects.get(pk=owner.api_key.pk).revoked_at
    assert entry.before == {"active": True, "revoked_at": None}
    assert entry.after == {"active": False, "revoked_at": DjangoJSONEncoder().default(revoked_at)}


def test_revoking_a_revoked_key_again_changes_nothing_and_records_nothing(
    client: Client, owner: IssuedKey, operator_headers: dict[str, str]
) -> None:
    client.post(f"/api/keys/{owner.api_key.pk}/revoke/", headers=operator_headers)

    client.post(f"/api/keys/{owner.api_key.pk}/revoke/", headers=operator_headers)

    assert AuditEntry.objects.filter(action="revoke").count() == 1


def test_a_key_created_through_the_api_is_recorded_without_its_secret(
    client: Client, tenant: Tenant, operator_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/keys/", {"tenant": tenant.pk, "name": "ci"}, content_type="application/json", headers=operator_headers
    )

    assert response.status_code == 201, response.content
    plaintext = response.json()["key"]
    entry = AuditEntry.objects.get(model_label="tenants.apikey")
    assert (entry.action, entry.actor_kind) == ("create", "token")
    assert entry.after is not None
    assert entry.after["digest"] == "[redacted]"
    assert plaintext not in str(entry.after)
    assert ApiKey.objects.get(pk=entry.object_id).digest not in str(entry.after)


def test_a_request_the_api_refuses_records_nothing(client: Client, owner: IssuedKey) -> None:
    response = client.post(f"/api/keys/{owner.api_key.pk}/revoke/")

    assert response.status_code == 401
    assert not AuditEntry.objects.exists()
