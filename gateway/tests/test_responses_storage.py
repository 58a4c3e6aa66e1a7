"""Stored responses: kept per tenant, read back by that tenant only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

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


def test_a_response_holding_a_nul_is_kept_and_read_back_whole() -> None:
    """Postgres's JSON types refuse a NUL: the row was never written, and the client's later GET found nothing."""
    response = {**RESPONSE, "instructions": "a\x00b", "output": [{"type": "message", "content": "\x00"}]}

    stored_response_create(tenant_id=1, key_id=10, response=response)

    assert stored_response_get(tenant_id=1, response_id="resp_abc") == response


@pytest.mark.django_db(transaction=True)
def test_responses_stored_as_json_before_migration_0003_read_back_the_same_after_it() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("gateway", "0002_stored_response")])
    try:
        before = executor.loader.project_state([("gateway", "0002_stored_response")]).apps
        before.get_model("gateway", "StoredResponse").objects.create(
            response_id="resp_abc", tenant_id=1, model="m", body=RESPONSE, created_at="2026-12-01T00:00:00Z"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert stored_response_get(tenant_id=1, response_id="resp_abc") == RESPONSE


@pytest.mark.django_db(transaction=True)
def test_undoing_migration_0003_keeps_a_response_holding_a_nul_with_a_replacement_character() -> None:
    stored_response_create(tenant_id=1, key_id=None, response={**RESPONSE, "instructions": "a\x00b"})
    executor = MigrationExecutor(connection)
    executor.migrate([("gateway", "0002_stored_response")])
    try:
        before = executor.loader.project_state([("gateway", "0002_stored_response")]).apps
        assert before.get_model("gateway", "StoredResponse").objects.get().body["instructions"] == "a\ufffdb"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
