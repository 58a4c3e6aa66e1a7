"""Fill the benchmark database: providers in front of the fake upstreams, their routes, one tenant, two keys.

* `bench-model` on an OpenAI-kind provider (the shared fake upstream), and
  `bench-claude` on an Anthropic-kind provider (bench/nginx/fake_anthropic.lua);
  both priced, so the ledger computes a cost.
* a plain key with no limits, and a limited key (of another tenant) whose key and tenant carry
  requests, tokens and concurrency limits and a budget, all far above what a
  run can reach: the limiter and budget checks run on every request, none refuses.

Run by bench/run.sh against a freshly created database, with the same
environment as the server it benchmarks (DATABASE_URL, SECRET_KEY, ...).
It prints the two keys' plaintexts (plain, then limited) on one line and
nothing else, so the script can capture them; they live only in the script's
memory and the throwaway database, never in a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:18080/v1")
ANTHROPIC_URL = os.environ.get("BENCH_ANTHROPIC_URL", "http://127.0.0.1:18083/v1")
MODEL = os.environ.get("BENCH_MODEL", "bench-model")
CLAUDE = os.environ.get("BENCH_CLAUDE_MODEL", "bench-claude")
UNREACHABLE = 10**9  # limits no run can reach: checked on every request, never refusing


def seed() -> tuple[str, str]:
    """Create the rows the benchmark needs and return the plain and the limited key's plaintexts."""
    from decimal import Decimal

    from django.db import transaction

    from billing.models import Budget, Price, RateLimit
    from providers.credentials import encrypt_credential
    from providers.models import ModelRoute, Provider, PublicModel
    from tenants.services import api_key_create, tenant_create

    with transaction.atomic():
        # The fake upstreams accept any key; a credential is set anyway so the
        # benchmark pays for the header a real provider needs.
        routes = []
        for name, kind, url, model in (
            ("bench-upstream", "openai", UPSTREAM_URL, MODEL),
            ("bench-anthropic", "anthropic", ANTHROPIC_URL, CLAUDE),
        ):
            provider = Provider.objects.create(
                name=name, kind=kind, base_url=url, credential_encrypted=encrypt_credential("sk-bench-not-a-real-key")
            )
            public = PublicModel.objects.create(public_id=model, owned_by="bench", max_output_tokens=1024)
            routes.append(ModelRoute.objects.create(model=public, provider=provider, upstream_model=model))
        for route in routes:
            Price.objects.create(route=route.model, input_per_million=Decimal("2.5"), output_per_million=Decimal("10"))
        # Two tenants: a tenant's limits apply to all its keys, and the plain key must have none.
        _, plain = api_key_create(tenant=tenant_create(name="Bench", slug="bench"), name="bench/run.sh, no limits")
        tenant = tenant_create(name="Bench, limited", slug="bench-limited")
        limited_key, limited = api_key_create(tenant=tenant, name="bench/run.sh, limits and budget")
        for owner in ({"api_key": limited_key}, {"tenant": tenant}):
            RateLimit.objects.create(
                **owner,
                requests_per_minute=UNREACHABLE,
                tokens_per_minute=UNREACHABLE,
                max_concurrent=UNREACHABLE,
            )
        Budget.objects.create(api_key=limited_key, period=Budget.Period.MONTHLY, amount=Decimal(UNREACHABLE))
    return plain, limited


def main() -> None:
    # Run as a script, so the project root is not on the path by itself.
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    print(*seed())


if __name__ == "__main__":
    main()
