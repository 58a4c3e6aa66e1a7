"""Generated ledger rows for the rollup and report tests, and the sums the rollups must hold, computed in Python.

The rows mix tenants, keys, models, deployments (some calls none), statuses
of every error class, token counts, costs with all ten decimal places,
provider costs (known or not), latencies across the histogram's buckets and
times to first token (or none), over the days given.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from billing.histograms import BUCKETS, bucket_of
from billing.models import UsageRecord
from tenants.models import ApiKey

_seq = count(1)

# (status, error_type): successes weigh most; every error class appears.
STATUSES: tuple[tuple[int, str], ...] = (
    *[(200, "")] * 12,
    (400, "invalid_request_error"),
    (401, "invalid_api_key"),
    (404, "model_not_found"),
    (408, "request_timeout"),
    (429, "rate_limit_exceeded"),
    (429, "upstream_rate_limited"),
    (500, "internal_error"),
    (502, "upstream_unreachable"),
    (503, "upstream_unavailable"),
    (503, "no_deployment_available"),
    (503, "limiter_unavailable"),
    (504, "upstream_timeout"),
)
MODELS = {
    "gpt-4o": ((11, "openai", "openai/gpt-4o"), (12, "azure-eu", "azure-eu/gpt-4o-eu")),
    "claude": ((21, "anthropic", "anthropic/claude-3-7"),),
    "llama": ((31, "ollama", "ollama/llama3"), (32, "groq", "groq/llama3-70b")),
}


def error_class(status: int, error_type: str) -> str | None:
    """The rollups' error class of a row, as documented on UsageRollup; None for a success."""
    if status < 400:
        return None
    if status in (408, 504):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "client"
    if error_type.startswith("upstream") or error_type == "no_deployment_available":
        return "upstream"
    return "other"


def make_ledger(
    *, keys: Sequence[ApiKey], rows: int, start: datetime, hours: int, seed: int = 7, **fixed: Any
) -> list[UsageRecord]:
    """`rows` ledger rows of `keys`, at random times in the `hours` from `start`; `fixed` sets fields outright."""
    rng = random.Random(seed)
    records = []
    for _ in range(rows):
        key = rng.choice(keys)
        model = rng.choice(sorted(MODELS))
        status, error_type = rng.choice(STATUSES)
        # A refusal before any deployment (a limit, an unknown key) names none.
        tried = rng.random() > (0.8 if status in (401, 429) else 0.05)
        deployment_id, provider, deployment = rng.choice(MODELS[model])
        provider_cost = Decimal(rng.randrange(0, 10**7)).scaleb(-10) if rng.random() < 0.7 else Decimal(0)
        fields = {
            "request_id": f"gen-{next(_seq)}",
            "created_at": start + timedelta(seconds=rng.randrange(hours * 3600)),
            "tenant_id": key.tenant_id,
            "api_key_id": key.pk,
            "key_prefix": key.prefix,
            "model": model,
            "provider": provider,
            "deployment_id": deployment_id if tried else None,
            "deployment": deployment if tried else "",
            "prompt_tokens": rng.randrange(0, 5000),
            "completion_tokens": rng.randrange(0, 2000),
            "cached_tokens": rng.randrange(0, 500),
            "reasoning_tokens": rng.randrange(0, 300),
            "cache_creation_tokens": rng.randrange(0, 800) if rng.random() < 0.3 else 0,
            "cost": Decimal(rng.randrange(0, 10**9)).scaleb(-10),
            "provider_cost": provider_cost if tried else Decimal(0),
            "latency_ms": int(rng.lognormvariate(6.5, 1.2)),
            "first_token_ms": int(rng.lognormvariate(5.5, 1.0)) if rng.random() < 0.5 else None,
            "status": status,
            "error_type": error_type,
            "streamed": False,
        }
        fields.update(fixed)
        records.append(UsageRecord(**fields))
    return UsageRecord.objects.bulk_create(records)


TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_creation_tokens", "reasoning_tokens")


@dataclass
class Expected:
    """One rollup row's sums, as the ledger's rows give them."""

    sums: dict[str, Any]
    latency: list[int]
    ttft: list[int]


def expected_rollups(
    records: Iterable[UsageRecord], *, daily: bool, per_key: bool = True
) -> dict[tuple[Any, ...], Expected]:
    """What the hourly (or daily) rollups, per key or per deployment, must hold for these rows, by unique key."""
    groups: dict[tuple[Any, ...], Expected] = defaultdict(
        lambda: Expected(sums=defaultdict(int), latency=[0] * BUCKETS, ttft=[0] * BUCKETS)
    )
    for record in records:
        at = record.created_at.astimezone(UTC)
        bucket = at.replace(minute=0, second=0, microsecond=0)
        if daily:
            bucket = bucket.replace(hour=0)
        owner = (record.tenant_id or 0, record.api_key_id or 0) if per_key else ()
        group = groups[(bucket, *owner, record.model, record.provider, record.deployment_id or 0)]
        sums = group.sums
        sums["requests"] += 1
        failed = error_class(record.status, record.error_type)
        if failed:
            sums[f"errors_{failed}"] += 1
        else:
            sums["latency_ms_sum"] += record.latency_ms
            group.latency[bucket_of(record.latency_ms)] += 1
        for name in TOKENS:
            sums[name] += getattr(record, name)
        sums["cost"] += record.cost
        sums["provider_cost"] += record.provider_cost
        if record.provider_cost > 0:
            sums["priced_cost"] += record.cost
        if record.first_token_ms is not None:
            sums["ttft_count"] += 1
            sums["ttft_ms_sum"] += record.first_token_ms
            group.ttft[bucket_of(record.first_token_ms)] += 1
    return dict(groups)
