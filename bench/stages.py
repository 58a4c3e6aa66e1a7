"""CPU per request by stage, from a py-spy profile of Portico under load (bench/profile.sh).

    python bench/stages.py PROFILE.txt REQUESTS_PER_SECOND [SECONDS] [RATE]

PROFILE.txt is `py-spy record --format raw` output: one folded stack per line and
the samples it got. Each sample is charged to the stage of the innermost frame
that belongs to one, so a stage is the code it names plus the libraries it calls
(the Redis client's socket writes count as limits, aiohttp's as relay). py-spy
samples the threads it sees active, system calls included, as the process's CPU
time counts them; a thread blocked on a database reply can look active too, so
the writer threads' figures are an upper bound. Compare the total with the CPU
the process was charged (bench/profile.sh prints both).
"""

from __future__ import annotations

import sys
from collections import Counter

# Checked from the innermost frame outward; the first stage any frame belongs to takes the sample.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("ledger writer (thread)", ("billing/ledger.py", "psycopg/", "psycopg_pool/")),
    ("request log and metrics", ("gateway/observability/", "logging/__init__.py", "prometheus_client")),
    ("limits (Redis)", ("billing/limits/",)),
    ("accounting", ("billing/metering.py", "gateway/accounting.py", "billing/tokens", "billing/money.py")),
    ("auth", ("gateway/auth.py", "gateway/snapshot.py", "gateway/refresh.py")),
    ("validation", ("gateway/intake.py", "gateway/validation.py", "gateway/extensions.py", "json/")),
    ("relay: adapter", ("providers/adapters/",)),
    (
        "relay: upstream HTTP",
        ("providers/http1.py", "aiohttp/", "providers/transport.py", "yarl/", "multidict/", "httpx/", "httpcore/"),
    ),
    ("routing", ("gateway/routing", "gateway/strategies.py", "gateway/breakers/")),
    ("relay", ("gateway/relay.py", "gateway/streaming.py", "gateway/sse.py")),
    ("answer cache check", ("gateway/response_cache/",)),
    ("Django and Ninja", ("ninja/", "django/", "gateway/operations.py")),
    (
        "server: HTTP in and out",
        ("gateway/fastpath.py", "gateway/server.py", "gateway/server_cycle.py", "gateway/asgi.py", "uvicorn/"),
    ),
    ("event loop", ("asyncio/",)),
]


def stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for stage, places in STAGES:
            if any(place in frame for place in places):
                return stage
    return "other"


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, rps = argv[1], float(argv[2])
    seconds = float(argv[3]) if len(argv) > 3 else 10.0
    rate = float(argv[4]) if len(argv) > 4 else 400.0
    samples: Counter[str] = Counter()
    with open(path, encoding="utf-8") as profile:
        for line in profile:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack:
                samples[stage_of(stack)] += int(count)
    total = sum(samples.values())
    per_request = 1e6 / rate / seconds / rps  # µs of one thread's time per sample, per request
    print("| stage | µs per request | share |\n|---|---:|---:|")
    for stage, count in samples.most_common():
        print(f"| {stage} | {count * per_request:.1f} | {100 * count / total:.1f} % |")
    print(f"| **all** | **{total * per_request:.1f}** | 100 % |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
