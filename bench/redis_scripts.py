"""Redis's own time for the limiter's scripts: an acquire and its settle, as the benchmark's limited key sends them.

    .venv/bin/python bench/redis_scripts.py [--against REV] [--pairs 20000] [--rounds 4] [--redis URL]

Every limited request runs the acquire script and then the settle script in
Redis, which is single-threaded and, on a small box, shares its cores with
Portico. This sends N acquire/settle pairs of one API key (a key and a tenant
window, each with an RPM, a TPM and a concurrency limit, and a monthly
budget, as bench/seed.py's limited key has), pipelined 500 at a time, and
prints the microseconds Redis spent per pair (INFO commandstats, so neither
the network nor this process counts). With `--against REV` it runs the scripts
of billing/limits/scripts.py at that git revision too, taking turns round by
round, so drift in the machine hits both alike. The arguments are built by
`RedisLimiter` itself, so they are the ones Portico sends. Keys live under a
prefix of their own and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402

from billing.limits import Ask, Budget, RedisLimiter, Window  # noqa: E402
from billing.limits import scripts as current_scripts  # noqa: E402
from billing.limits.verdicts import ticket_for  # noqa: E402

FAR = 10**9  # limits far out of reach: every acquire passes, as the benchmark's do
WINDOWS = (
    Window(scope="key:1", label="this API key", rpm=FAR, tpm=FAR, concurrency=FAR),
    Window(scope="tenant:1", label="this organization", rpm=FAR, tpm=FAR, concurrency=FAR),
)
BUDGET = Budget(scope="key:1", label="this API key", period="2026-12", limit=10**18, spent=0, ttl=2_678_400)
BATCH = 500


def scripts_at(revision: str) -> ModuleType:
    """billing/limits/scripts.py as it was at `revision`."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:billing/limits/scripts.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = ModuleType(f"scripts_{revision}")
    sys.modules[module.__name__] = module  # its dataclasses look their module up there
    exec(compile(source, f"{revision}:billing/limits/scripts.py", "exec"), module.__dict__)  # noqa: S102
    return module


def pair_cost(client: redis.Redis, limiter: RedisLimiter, scripts: ModuleType, pairs: int) -> float:
    """Redis's microseconds per acquire/settle pair."""
    acquire, settle = client.script_load(scripts.ACQUIRE_SOURCE), client.script_load(scripts.SETTLE_SOURCE)
    client.config_resetstat()
    pipe = client.pipeline(transaction=False)
    for n in range(pairs):
        ask = Ask(request_id=f"req_{n:032x}", windows=WINDOWS, budgets=(BUDGET,), tokens=96, cost=720_000)
        keys, args = limiter._acquire_call(ask)
        pipe.evalsha(acquire, len(keys), *keys, *args)
        keys, args = limiter._settle_call(ticket_for(ask, local=False), 43, 250_000)
        pipe.evalsha(settle, len(keys), *keys, *args)
        if n % BATCH == BATCH - 1 or n == pairs - 1:
            replies = pipe.execute(raise_on_error=False)
            failed = next((reply for reply in replies if isinstance(reply, Exception)), None)
            if failed is not None:
                raise SystemExit(f"a script failed: {failed}")
    stats = client.info("commandstats")["cmdstat_evalsha"]
    return 2 * stats["usec"] / stats["calls"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="a git revision whose scripts to measure too")
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    options = parser.parse_args()

    versions = {"this tree": current_scripts}
    if options.against:
        versions[options.against] = scripts_at(options.against)
    prefix = f"portico-bench-scripts-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(options.redis)
    # Its connection is never opened: only the argument builders are used, with Redis's own clock.
    limiter = RedisLimiter(options.redis, prefix=prefix, cluster=False)
    results: dict[str, list[float]] = {name: [] for name in versions}
    try:
        for round_ in range(1, options.rounds + 1):
            for name, scripts in versions.items():
                cost = pair_cost(client, limiter, scripts, options.pairs)
                results[name].append(cost)
                print(f"round {round_}  {name:>12}: {cost:6.2f} µs of Redis per acquire + settle", flush=True)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    for name, costs in results.items():
        print(f"{name:>12}: best {min(costs):6.2f} µs, mean {sum(costs) / len(costs):6.2f} µs over {len(costs)} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
