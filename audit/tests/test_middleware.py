"""The audit scope under ASGI: opened in the event loop, seen by the synchronous view's thread."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import AsyncClient, RequestFactory

from audit.middleware import request_scope
from audit.models import AuditEntry
from tenants.tests.factories import make_key, management_token_headers


@pytest.mark.django_db(transaction=True)
async def test_a_revoke_under_asgi_is_recorded_with_the_token_that_made_it() -> None:
    @sync_to_async
    def setup() -> tuple[int, dict[str, str]]:
        user = get_user_model().objects.create_user(username="ops", is_staff=True)
        return make_key().api_key.pk, management_token_headers(user)

    key_id, headers = await setup()
    try:
        response = await AsyncClient().post(f"/api/keys/{key_id}/revoke/", headers=headers)
        entry = await AuditEntry.objects.aget()
    finally:
        await sync_to_async(connections.close_all)()

    assert response.status_code == 200
    assert (entry.action, entry.actor_kind, entry.origin) == ("revoke", "token", "api")
    assert entry.actor.endswith(" of ops")


@pytest.mark.parametrize(
    ("path", "origin"),
    [("/admin/providers/", "admin"), ("/api/keys/", "api"), ("/portal/keys/", "portal"), ("/v1/models", None)],
)
def test_only_the_admin_the_api_and_the_portal_open_a_scope(path: str, origin: str | None) -> None:
    scope = request_scope(RequestFactory().get(path, REMOTE_ADDR="192.0.2.9"))

    assert (scope.origin if scope else None) == origin
    if scope is not None:
        assert scope.remote_addr == "192.0.2.9"
