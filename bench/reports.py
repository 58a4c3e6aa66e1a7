"""How fast the usage rollups catch up with a large ledger, and how fast the reports read them.

    .venv/bin/python bench/reports.py [--rows 10000000] [--database-url postgres://postgres@127.0.0.1:5432/portico_bench_reports]

Creates the database (it must not exist yet; `--drop` drops it first), migrates
it, adds tenants with keys and budgets, and generates `--rows` ledger rows over
the last 30 days in PostgreSQL itself (INSERT … SELECT over generate_series:
no row passes through Python). Traffic is skewed, as it is in life: the first
tenants send most of it, and each key calls three deployments of its own. Then it
times:

* the rollups catching up with the whole ledger (billing.rollups, as the periodic task runs them);
* `dashboard(window="30d")` and `tenant_report` of the busiest tenant over 30 days:
  the median of `--runs` runs after one warm-up. The target is under 300 ms each;
* whole pages, through Django's test client as an operator and as the busiest
  tenant's admin: the dashboard, the tenant's report, the console's tenant and
  key pages, the ledger filtered by the tenant, and the portal's overview,
  usage, request log and CSV export. Before these, `--recent` more rows are
  written after the rollups' last run, as the rollup interval leaves them in
  life, so the pages that add the ledger's newest rows to the rollups read some.

Not a test: it takes minutes at 10 million rows, and the database is left in
place for a closer look (drop it with `--drop` next time, or `dropdb`).
`--reuse` times the reports and pages again on such a database, without
generating or rolling up anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROJECT = Path(__file__).resolve().parent.parent
TARGET_MS = 300.0
INSERT_BATCH = 1_000_000  # ledger rows per INSERT statement, so progress shows
# Public models and their deployments: (public id, provider, upstream model, USD in and out per 1M tokens).
DEPLOYMENTS = [
    ("gpt-4o", "openai", "gpt-4o", 2.5, 10),
    ("gpt-4o", "azure-eu", "gpt-4o-eu", 2.5, 10),
    ("gpt-4o-mini", "openai", "gpt-4o-mini", 0.15, 0.6),
    ("claude-sonnet", "anthropic", "claude-3-7-sonnet", 3, 15),
    ("claude-sonnet", "bedrock", "anthropic.claude-3-7", 3, 15),
    ("llama-70b", "groq", "llama3-70b", 0.59, 0.79),
    ("llama-70b", "together", "llama-3-70b", 0.88, 0.88),
    ("llama-70b", "ollama", "llama3:70b", 0, 0),
    ("embed-small", "openai", "text-embedding-3-small", 0.02, 0),
    ("o3-mini", "openai", "o3-mini", 1.1, 4.4),
]
# Failures, in the share they come in: status and the ledger's error type.
FAILURES = [
    (400, "invalid_request_error"),
    (429, "rate_limit_exceeded"),
    (429, "upstream_rate_limited"),
    (502, "upstream_unreachable"),
    (503, "upstream_unavailable"),
    (504, "upstream_timeout"),
    (500, "internal_error"),
]

# One statement per batch; the arrays describe the keys and deployments, random() picks among them per row.
LEDGER_INSERT = """
INSERT INTO billing_usagerecord (
    request_id, client_request_id, created_at, tenant_id, api_key_id, key_prefix, operation, model, provider,
    upstream_model, deployment_id, deployment, attempts, prompt_tokens, completion_tokens, cached_tokens,
    reasoning_tokens, tokens_estimated, cost, provider_cost, latency_ms, first_token_ms, status, error_type,
    streamed, client_disconnected
)
SELECT
    'bench-' || g, '', now() - (r_time * %(days)s) * interval '1 day',
    (%(tenant_ids)s::bigint[])[ki], (%(key_ids)s::bigint[])[ki], (%(prefixes)s::text[])[ki], 'chat',
    (%(models)s::text[])[di], (%(providers)s::text[])[di], (%(upstreams)s::text[])[di],
    CASE WHEN failed AND fi = 2 THEN NULL ELSE di END,
    CASE WHEN failed AND fi = 2 THEN '' ELSE (%(providers)s::text[])[di] || '/' || (%(upstreams)s::text[])[di] END,
    1, prompt, completion, cached, 0, false,
    round((prompt * (%(inputs)s::numeric[])[di] + completion * (%(outputs)s::numeric[])[di]) / 1000000, 10),
    round((prompt * (%(inputs)s::numeric[])[di] + completion * (%(outputs)s::numeric[])[di]) * 0.7 / 1000000, 10),
    latency, CASE WHEN streamed THEN least(latency, ttft) END,
    CASE WHEN failed THEN (%(statuses)s::int[])[fi] ELSE 200 END,
    CASE WHEN failed THEN (%(error_types)s::text[])[fi] ELSE '' END,
    streamed, false
FROM (
    SELECT
        g,
        random() AS r_time,
        1 + floor(%(key_count)s * random() ^ 3)::int AS ki,
        floor(3 * random())::int AS pick,
        1 + floor(%(failure_count)s * random())::int AS fi,
        random() < 0.06 AS failed,
        random() < 0.5 AS streamed,
        floor(50 + random() * 4000)::int AS prompt,
        floor(random() * 1500)::int AS completion,
        floor(random() * 300)::int AS cached,
        -- log-normal latencies: median about 650 ms, a long tail; first tokens about 150 ms
        least(floor(exp(6.5 + 0.9 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))), 600000)::int AS latency,
        floor(exp(5 + 0.7 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())))::int AS ttft
    FROM generate_series(%(first)s, %(last)s) AS g
) AS random_draws
-- Each key calls three deployments of its own, as an application uses a few models.
CROSS JOIN LATERAL (SELECT 1 + mod(ki * 3 + pick, %(deployment_count)s) AS di) AS deployment_pick
"""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="ledger rows to generate (default 10,000,000)")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/portico_bench_reports",
        help="a PostgreSQL database that does not exist yet",
    )
    parser.add_argument("--drop", action="store_true", help="drop the database first if it exists")
    parser.add_argument(
        "--reuse", action="store_true", help="time the reports and pages of a database an earlier run left, as it is"
    )
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--keys-per-tenant", type=int, default=4)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each report (after one warm-up)")
    parser.add_argument(
        "--recent", type=int, default=10_000, help="ledger rows written after the rollups' last run (default 10,000)"
    )
    return parser.parse_args()


def create_database(url: str, *, drop: bool) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not drop:
            sys.exit(f"the database {name} exists: give --drop to drop it first, or another --database-url")
        quoted = sql.Identifier(name)
        if exists:
            connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(quoted))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(quoted))


def seed(tenants: int, keys_per_tenant: int) -> tuple[list[Any], int]:
    """Tenants, their keys, and budgets for a third of them and a few keys; the keys, and the busiest tenant."""
    from decimal import Decimal

    from django.db import transaction

    from billing.models import Budget
    from tenants.services import api_key_create, tenant_create

    keys = []
    with transaction.atomic():
        for number in range(1, tenants + 1):
            tenant = tenant_create(name=f"Tenant {number}", slug=f"tenant-{number}")
            for key_number in range(1, keys_per_tenant + 1):
                keys.append(api_key_create(tenant=tenant, name=f"key {key_number}")[0])
            if number % 3 == 0:
                Budget.objects.create(tenant=tenant, period=Budget.Period.MONTHLY, amount=Decimal(5000))
        for key in keys[::25]:
            Budget.objects.create(api_key=key, period=Budget.Period.DAILY, amount=Decimal(50))
    # Keys are drawn with a skew to the front of the list, which is the first tenant's.
    return keys, keys[0].tenant_id


def generate_ledger(rows: int, keys: list[Any], *, first_id: int = 1) -> float:
    from django.db import connection

    parameters = {
        "days": 30,
        "tenant_ids": [key.tenant_id for key in keys],
        "key_ids": [key.pk for key in keys],
        "prefixes": [key.prefix for key in keys],
        "key_count": len(keys),
        "models": [row[0] for row in DEPLOYMENTS],
        "providers": [row[1] for row in DEPLOYMENTS],
        "upstreams": [row[2] for row in DEPLOYMENTS],
        "inputs": [str(row[3]) for row in DEPLOYMENTS],
        "outputs": [str(row[4]) for row in DEPLOYMENTS],
        "deployment_count": len(DEPLOYMENTS),
        "statuses": [row[0] for row in FAILURES],
        "error_types": [row[1] for row in FAILURES],
        "failure_count": len(FAILURES),
    }
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        for first in range(first_id, first_id + rows, INSERT_BATCH):
            last = min(first + INSERT_BATCH - 1, first_id + rows - 1)
            cursor.execute(LEDGER_INSERT, {**parameters, "first": first, "last": last})
            print(f"  ledger rows {first:,} to {last:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("ANALYZE billing_usagerecord")
    return time.perf_counter() - started


def run_rollups() -> float:
    from billing.rollups import usage_rollups_update

    started = time.perf_counter()
    while not usage_rollups_update(seconds=60).caught_up:
        print(f"  rollups: {time.perf_counter() - started:.0f} s so far", flush=True)
    return time.perf_counter() - started


def vacuum_rollups() -> None:
    """What autovacuum does to the rollups between two runs in a live deployment: statistics, and the
    visibility map that lets spend be read from an index alone."""
    from django.apps import apps
    from django.db import connection

    with connection.cursor() as cursor:
        for model in apps.get_app_config("billing").get_models():
            if model.__name__.endswith("Rollup"):
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def median_ms(work: Callable[[], Any], runs: int) -> float:
    work()  # warm-up: connections, plans, the page cache
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def page_timings(busiest: int, runs: int) -> list[tuple[str, str, float]]:
    """The median time of each page, as (label, address, ms); every page must answer 200."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tenants.models import ApiKey, Tenant, TenantMembership, TenantRole

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    tenant = Tenant.objects.get(pk=busiest)
    key = ApiKey.objects.filter(tenant=tenant).order_by("pk").first()
    assert key is not None
    users = get_user_model().objects
    operator = users.filter(username="bench-operator").first() or users.create_superuser("bench-operator")
    reader = users.filter(username="bench-tenant-admin").first() or users.create_user("bench-tenant-admin")
    TenantMembership.objects.get_or_create(tenant=tenant, user=reader, defaults={"role": TenantRole.ADMIN})
    console, portal = Client(), Client()
    console.force_login(operator)
    portal.force_login(reader)
    pages = [
        (console, "dashboard, 30 days", "/admin/?window=30d"),
        (console, "console tenant report, month", f"/admin/reports/tenants/{tenant.pk}/"),
        (console, "console tenant page", f"/admin/tenants/tenant/{tenant.pk}/change/"),
        (console, "console key page", f"/admin/tenants/apikey/{key.pk}/change/"),
        (console, "ledger, tenant filter", f"/admin/billing/usagerecord/?tenant={tenant.slug}"),
        (portal, "portal overview", f"/portal/{tenant.slug}/"),
        (portal, "portal usage, month", f"/portal/{tenant.slug}/usage/"),
        (portal, "portal request log", f"/portal/{tenant.slug}/requests/"),
        (portal, "portal CSV export, month", f"/portal/{tenant.slug}/usage/export/?format=csv"),
    ]
    timings = []
    for client, label, address in pages:

        def load(client: Client = client, address: str = address) -> None:
            response = client.get(address)
            assert response.status_code == 200, f"{address} answered {response.status_code}"
            for _part in response.streaming_content if response.streaming else ():  # type: ignore[attr-defined]
                pass  # read the whole export, as a client would

        timings.append((label, address, median_ms(load, runs)))
    return timings


def main() -> None:
    options = _parse()
    sys.path.insert(0, str(PROJECT))
    if not options.reuse:
        create_database(options.database_url, drop=options.drop)
    os.environ["DATABASE_URL"] = options.database_url
    os.environ.setdefault("SECRET_KEY", "portico-bench-not-a-secret")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from billing.models import DailyUsageRollup, HourlyUsageRollup
    from billing.reports import dashboard, tenant_report

    call_command("migrate", verbosity=0)
    if options.reuse:
        from tenants.models import Tenant

        busiest = Tenant.objects.get(slug="tenant-1").pk  # seed's first tenant, whom the skew favours
    else:
        keys, busiest = seed(options.tenants, options.keys_per_tenant)
        print(f"{options.tenants} tenants, {len(keys)} keys; generating {options.rows:,} ledger rows", flush=True)
        generated = generate_ledger(options.rows, keys)
        rollup_seconds = run_rollups()
        vacuum_rollups()
    today = timezone.now().date()
    board_ms = median_ms(lambda: dashboard(window="30d"), options.runs)
    report_ms = median_ms(
        lambda: tenant_report(tenant_id=busiest, start=today - timedelta(days=29), end=today), options.runs
    )
    report = tenant_report(tenant_id=busiest, start=today - timedelta(days=29), end=today)
    if not options.reuse:
        generate_ledger(options.recent, keys, first_id=options.rows + 1)
    pages = page_timings(busiest, options.runs)

    print()
    if not options.reuse:
        print(f"ledger rows                 {options.rows:>14,}  generated in {generated:.1f} s")
    print(
        f"hourly / daily rollup rows  {HourlyUsageRollup.objects.count():>14,} / {DailyUsageRollup.objects.count():,}"
    )
    if not options.reuse:
        print(f"rollups, from empty         {rollup_seconds:>12.1f} s  ({options.rows / rollup_seconds:,.0f} rows/s)")
    print(f"busiest tenant's requests   {report.totals.requests:>14,}")
    for label, value in (('dashboard(window="30d")', board_ms), ("tenant_report, 30 days", report_ms)):
        verdict = "ok" if value < TARGET_MS else f"over the {TARGET_MS:.0f} ms target"
        print(f"{label:<27} {value:>11.1f} ms  median of {options.runs}, {verdict}")
    print()
    print(f"pages, with {options.recent:,} ledger rows not rolled up yet (median of {options.runs}):")
    print("| page | address | ms |")
    print("|---|---|---:|")
    for label, address, value in pages:
        print(f"| {label} | `{address}` | {value:.1f} |")


if __name__ == "__main__":
    main()
