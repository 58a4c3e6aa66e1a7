"""Stored responses: kept per tenant, read back by that tenant only."""

from __future__ import annotations

import pytest

from gateway.responses.storage import stored_response_create, stored_response_delete, stored_response_get

pytestmark = pytest.mark.django_db

RESPONSE = {"id": "resp_abc", "object": "response", "created_at": 1_700_000_000, "model": "m", "output": []}


def test_the_owner_reads_its_response_back_and_another_tenant_finds_nothing() -> None:
    stored_response_create(tenant_id=1, key_id=10, response=RESPONSE)

    assert stored_response_get(tenant_id=1, response_id="resp_abc") == RESPONSE
    assert stored_response_get(tenant_id=2, response_id="resp_abc") is None


def test_only_the_owner_can_delete_it() -> None:
    stored_response_create(tenant_id=1, key_id=None, response=RESPONSE)

    assert not stored_response_delete(tenant_id=2, response_id="resp_abc")
    assert stored_response_delete(tenant_id=1, response_id="resp_abc")
    assert stored_response_get(tenant_id=1, response_id="resp_abc") is None
