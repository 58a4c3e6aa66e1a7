"""A whole setup made through the services, as an operator would make it, for the setup-as-code tests.

Providers with secrets (a credential, an extra header), a model-list source
and a model it manages, two public models (one falls back on the other) with
prices past and scheduled, deployments and a provider cost, and two tenants:
acme with a model list, a queue policy, rate limits, a budget and a key with
limits of its own; globex with nothing but defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.services import budget_set, deployment_price_add, price_add, rate_limit_set
from providers.model_lists.apply import listed_models_apply
from providers.model_lists.entries import ListedModel
from providers.model_lists.services import model_list_source_create
from providers.services import provider_create, public_model_create, public_model_update
from tenants.services import api_key_create
from tenants.tenant_services import tenant_add

# The secrets the setup holds, and the variables an export names them by.
SECRETS = {
    "PORTICO_PROVIDER_OPENAI_PROD_CREDENTIAL": "sk-prod-SECRET-1",
    "PORTICO_PROVIDER_OPENAI_PROD_HEADER_OPENAI_ORGANIZATION": "org-SECRET-2",
    "PORTICO_PROVIDER_AZURE_EU_CREDENTIAL": "azure-SECRET-3",
    "PORTICO_MODEL_LIST_CATALOG_CREDENTIAL": "list-SECRET-4",
}
PAST = datetime(2026, 1, 1, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def make_setup() -> dict[str, str]:
    """Make the setup; answers the plaintext of acme's key, which no export may hold."""
    openai = provider_create(
        name="openai-prod",
        kind="openai",
        base_url="https://api.openai.test/v1",
        credential=SECRETS["PORTICO_PROVIDER_OPENAI_PROD_CREDENTIAL"],
        extra_headers={"OpenAI-Organization": SECRETS["PORTICO_PROVIDER_OPENAI_PROD_HEADER_OPENAI_ORGANIZATION"]},
    )
    azure = provider_create(
        name="azure-eu",
        kind="azure",
        base_url="https://acme-eu.openai.test",
        credential=SECRETS["PORTICO_PROVIDER_AZURE_EU_CREDENTIAL"],
        api_version="2024-10-21",
        read_timeout=60.0,
    )
    provider_create(name="echo", kind="mock", accepts_stream_options=False)
    source = model_list_source_create(
        name="catalog",
        url="https://lists.test/models.json",
        credential=SECRETS["PORTICO_MODEL_LIST_CATALOG_CREDENTIAL"],
        refresh_interval=600,
    )
    listed = ListedModel(
        "listed-model", "", "/openai/v1/chat/completions", "openai", "/openai/v1", Decimal(1), Decimal(2)
    )
    listed_models_apply(source=source, listed=[listed], now=PAST)
    mini = public_model_create(
        public_id="gpt-4o-mini", deployments=[{"provider": openai, "upstream_model": "gpt-4o-mini"}]
    )
    full = public_model_create(
        public_id="gpt-4o",
        owned_by="openai",
        supports_vision=True,
        strategy="weighted",
        context_window=128_000,
        deployments=[
            {"provider": openai, "upstream_model": "gpt-4o", "weight": 3},
            {"provider": azure, "upstream_model": "gpt-4o-eu", "priority": 1, "max_in_flight": 8},
        ],
    )
    public_model_update(model=full, fields={"fallbacks": [mini.public_id]})
    price_add(model=full, input_per_million=Decimal("2.5"), output_per_million=Decimal(10), effective_from=PAST)
    price_add(
        model=full,
        input_per_million=Decimal(2),
        output_per_million=Decimal(8),
        cached_input_per_million=Decimal(1),
        effective_from=FUTURE,
    )
    deployment_price_add(
        deployment=full.deployments.get(upstream_model="gpt-4o"),
        input_per_million=Decimal("2.25"),
        output_per_million=Decimal(9),
        effective_from=PAST,
    )
    acme = tenant_add(
        name="Acme", slug="acme", fields={"allowed_models": [full], "queue_mode": "wait", "queue_max_wait": 45}
    )
    rate_limit_set(tenant=acme, requests_per_minute=600)
    rate_limit_set(tenant=acme, model="gpt-4o", tokens_per_minute=100_000)
    budget_set(tenant=acme, amount=Decimal("250.5"), period="daily")
    api_key, plaintext = api_key_create(tenant=acme, name="ci")
    rate_limit_set(api_key=api_key, requests_per_minute=7)
    budget_set(api_key=api_key, amount=Decimal(3))
    tenant_add(name="Globex", slug="globex")
    return {"key": plaintext}
