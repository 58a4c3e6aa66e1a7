"""Fill the benchmark database: providers in front of the fake upstreams, their public models, one tenant, two keys.

* `bench-model` on an OpenAI-kind provider (the shared fake upstream), and
  `bench-claude` on an Anthropic-kind provider (bench/nginx/fake_anthropic.lua);
  both priced, so the ledger computes a cost.
* `bench-failover`, priced the same, with two deployments: first the flaky upstream
  (bench/nginx/flaky.conf, every other chat request a 500), then the fast one, and 5xx
  among the failures that move a call on to the next deployment.
* a plain key with no limits, and a limited key (of another tenant) whose key and tenant carry
  requests, tokens and concurrency limits and a budget, all far above what a
  run can reach: the limiter and budget checks run on every request, none refuses.
  Neither tenant nor key has an allowlist, so both keys may call every model.

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
FLAKY_URL = os.environ.get("BENCH_FLAKY_URL", "http://127.0.0.1:18084/v1")
MODEL = os.environ.get("BENCH_MODEL", "bench-model")
CLAUDE = os.environ.get("BENCH_CLAUDE_MODEL", "bench-claude")
FAILOVER = os.environ.get("BENCH_FAILOVER_MODEL", "bench-failover")
UNREACHABLE = 10**9  # limits no run can reach: checked on every request, never refusing
# The fake upstreams accept any key; a credential is set anyway so the
# benchmark pays for the header a real provider needs.
CREDENTIAL = "sk-bench-not-a-real-key"


def seed_models() -> None:
    """The providers, the three public models and their tenant prices."""
    from decimal import Decimal

    from billing.models import Price
    from providers.services import provider_create, public_model_create

    fast = provider_create(name="bench-upstream", kind="openai", base_url=UPSTREAM_URL, credential=CREDENTIAL)
    anthropic = provider_create(name="bench-anthropic", kind="anthropic", base_url=ANTHROPIC_URL, credential=CREDENTIAL)
    flaky = provider_create(name="bench-flaky", kind="openai", base_url=FLAKY_URL, credential=CREDENTIAL)
    # The flaky upstream serves the fast one's model; its 500s ("5xx") send the call on to the fast one.
    deployments = {
        MODEL: [{"provider": fast, "upstream_model": MODEL}],
        CLAUDE: [{"provider": anthropic, "upstream_model": CLAUDE}],
        FAILOVER: [
            {"provider": flaky, "upstream_model": MODEL, "priority": 0},
            {"provider": fast, "upstream_model": MODEL, "priority": 1},
        ],
    }
    for public_id, routes in deployments.items():
        extra = {"retry_on": ["connect", "timeout", "5xx"]} if public_id == FAILOVER else {}
        public = public_model_create(
            public_id=public_id, owned_by="bench", max_output_tokens=1024, deployments=routes, **extra
        )
        Price.objects.create(route=public, input_per_million=Decimal("2.5"), output_per_million=Decimal("10"))


def seed() -> tuple[str, str]:
    """Create the rows the benchmark needs and return the plain and the limited key's plaintexts."""
    from decimal import Decimal

    from django.db import transaction

    from billing.models import Budget, RateLimit
    from tenants.services import api_key_create, tenant_create

    with transaction.atomic():
        seed_models()
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
