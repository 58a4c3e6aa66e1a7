"""Fill the benchmark database: one provider in front of the fake upstream, one route, one tenant, one key.

Run by bench/run.sh against a freshly created database, with the same
environment as the server it benchmarks (DATABASE_URL, SECRET_KEY, ...).
It prints the key's plaintext on stdout, and nothing else, so the script can
capture it; the key lives only in the script's memory and the throwaway
database, never in a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:18080/v1")
MODEL = os.environ.get("BENCH_MODEL", "bench-model")


def seed() -> str:
    """Create the rows the benchmark needs and return the key's plaintext."""
    from django.db import transaction

    from providers.credentials import encrypt_credential
    from providers.models import ModelRoute, Provider
    from tenants.services import api_key_create, tenant_create

    with transaction.atomic():
        # The fake upstream accepts any key; a credential is set anyway so the
        # benchmark pays for the Authorization header a real provider needs.
        provider = Provider.objects.create(
            name="bench-upstream",
            kind="openai",
            base_url=UPSTREAM_URL,
            credential_encrypted=encrypt_credential("sk-bench-upstream-not-a-real-key"),
        )
        ModelRoute.objects.create(public_id=MODEL, provider=provider, upstream_model=MODEL, owned_by="bench")
        tenant = tenant_create(name="Bench", slug="bench")
        _, plaintext = api_key_create(tenant=tenant, name="bench/run.sh")
    return plaintext


def main() -> None:
    # Run as a script, so the project root is not on the path by itself.
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    print(seed())


if __name__ == "__main__":
    main()
