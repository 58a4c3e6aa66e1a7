"""The move to public models keeps every route, allowlist, price and ledger row.

Rows are made with the historical models of the schema before the move, then
the migrations run forward on the real database, as they would on an upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("providers", "0004_provider_credential_header_encrypted_headers"),
    ("tenants", "0005_hash_plain_management_tokens"),
    ("billing", "0001_initial"),
]
AFTER = [
    ("providers", "0005_public_models"),
    ("tenants", "0006_allowed_public_models"),
    ("billing", "0002_public_model_prices_and_provider_costs"),
]
CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

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


def _old_rows(apps: Apps) -> dict[str, Any]:
    Provider = apps.get_model("providers", "Provider")
    ModelRoute = apps.get_model("providers", "ModelRoute")
    Tenant = apps.get_model("tenants", "Tenant")
    ApiKey = apps.get_model("tenants", "ApiKey")
    Price = apps.get_model("billing", "Price")
    UsageRecord = apps.get_model("billing", "UsageRecord")

    openai = Provider.objects.create(name="openai", kind="openai", base_url="https://api.openai.com/v1")
    local = Provider.objects.create(name="local", kind="ollama", base_url="http://ollama:11434")
    gpt = ModelRoute.objects.create(
        public_id="gpt-4o",
        provider=openai,
        upstream_model="gpt-4o-2024-08-06",
        owned_by="openai",
        context_window=128_000,
        max_output_tokens=16_384,
        supports_vision=True,
        created_at=CREATED,
    )
    llama = ModelRoute.objects.create(
        public_id="llama", provider=local, upstream_model="llama3.2", supports_tools=False, active=False
    )
    embed = ModelRoute.objects.create(
        public_id="embed", provider=openai, upstream_model="text-embedding-3-small", supports_embeddings=True
    )
    tenant = Tenant.objects.create(name="Acme", slug="acme", models_restricted=True)
    tenant.allowed_models.set([gpt, llama])
    key = ApiKey.objects.create(tenant=tenant, name="ci", prefix="pk-aaaaaaaa", digest="0" * 64, models_restricted=True)
    key.allowed_models.set([gpt])
    Price.objects.create(route=gpt, effective_from=CREATED, input_per_million=Decimal("2.5"), output_per_million=10)
    Price.objects.create(route=gpt, input_per_million=Decimal(2), output_per_million=8)
    Price.objects.create(route=embed, input_per_million=Decimal("0.02"), output_per_million=0)
    UsageRecord.objects.create(
        request_id="req-1",
        created_at=CREATED,
        tenant=tenant,
        api_key=key,
        model="gpt-4o",
        provider="openai",
        upstream_model="gpt-4o-2024-08-06",
        cost=Decimal("0.0125"),
        status=200,
    )
    return {"gpt": gpt, "llama": llama, "embed": embed, "tenant": tenant, "key": key}


def test_each_route_becomes_a_public_model_with_that_route_as_its_one_deployment(old_apps: Apps) -> None:
    old = _old_rows(old_apps)

    apps = _migrate(AFTER)

    PublicModel = apps.get_model("providers", "PublicModel")
    assert sorted(PublicModel.objects.values_list("public_id", flat=True)) == ["embed", "gpt-4o", "llama"]
    gpt = PublicModel.objects.get(public_id="gpt-4o")
    assert (gpt.owned_by, gpt.context_window, gpt.max_output_tokens) == ("openai", 128_000, 16_384)
    assert (gpt.supports_chat, gpt.supports_vision, gpt.supports_embeddings) == (True, True, False)
    assert (gpt.strategy, gpt.fallbacks, gpt.created_at) == ("priority", [], CREATED)
    [deployment] = gpt.deployments.all()
    assert (deployment.pk, deployment.provider.name, deployment.upstream_model) == (
        old["gpt"].pk,
        "openai",
        "gpt-4o-2024-08-06",
    )
    assert (deployment.priority, deployment.weight, deployment.active) == (0, 1, True)
    llama = PublicModel.objects.get(public_id="llama")
    assert (llama.supports_tools, llama.active, llama.deployments.get().active) == (False, False, False)
    assert PublicModel.objects.get(public_id="embed").supports_embeddings


def test_allowlists_prices_and_ledger_rows_follow_to_the_public_models(old_apps: Apps) -> None:
    old = _old_rows(old_apps)

    apps = _migrate(AFTER)

    Tenant = apps.get_model("tenants", "Tenant")
    ApiKey = apps.get_model("tenants", "ApiKey")
    Price = apps.get_model("billing", "Price")
    UsageRecord = apps.get_model("billing", "UsageRecord")
    tenant = Tenant.objects.get(pk=old["tenant"].pk)
    assert sorted(m.public_id for m in tenant.allowed_models.all()) == ["gpt-4o", "llama"]
    assert tenant.models_restricted
    assert [m.public_id for m in ApiKey.objects.get(pk=old["key"].pk).allowed_models.all()] == ["gpt-4o"]
    prices = sorted((p.route.public_id, p.input_per_million) for p in Price.objects.all())
    assert prices == [("embed", Decimal("0.02")), ("gpt-4o", Decimal(2)), ("gpt-4o", Decimal("2.5"))]
    row = UsageRecord.objects.get(request_id="req-1")
    assert (row.model, row.provider, row.cost, row.tenant_id) == ("gpt-4o", "openai", Decimal("0.0125"), tenant.pk)
    assert (row.deployment_id, row.deployment, row.attempts, row.provider_cost) == (None, "", 1, Decimal(0))
