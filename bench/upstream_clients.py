"""CPU per upstream call of each upstream client, in one process, against the harness's fast upstream.

    ../shared/bench/nginx.sh start upstream     # 127.0.0.1:18080
    .venv/bin/python bench/upstream_clients.py [calls] [concurrency]

Each client sends the same chat request `calls` times from `concurrency` tasks on uvloop, reading
every answer whole, as the relay does; the figure is the process's CPU time per call. It isolates
the client: no Portico server, no limits, no ledger.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench-upstream-clients-only")
os.environ.setdefault("DATABASE_URL", "sqlite://:memory:")
django.setup()

import uvloop  # noqa: E402

from providers.adapters.base import UpstreamRequest  # noqa: E402
from providers.http1 import Http1Upstream  # noqa: E402
from providers.tests.factories import make_provider_info  # noqa: E402
from providers.transport import AiohttpUpstream  # noqa: E402

URL = "http://127.0.0.1:18080/v1/chat/completions"
BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"hi"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer bench", "accept-encoding": "identity"}
PROVIDER = make_provider_info(name="bench", base_url="http://127.0.0.1:18080/v1", credential="", extra_headers={})


async def run(client: type, calls: int, concurrency: int) -> float:
    upstream = client(PROVIDER, max_connections=concurrency)

    async def worker(count: int) -> None:
        for _ in range(count):
            response = await upstream.send(UpstreamRequest("POST", URL, HEADERS, BODY))
            try:
                await response.aread()
            finally:
                await response.aclose()

    await worker(concurrency)  # warm: connections open, URLs parsed
    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    spent = time.process_time() - started
    await upstream.aclose()
    return spent / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    print(f"{calls} calls from {concurrency} tasks; CPU per call")
    for name, client in (("http1", Http1Upstream), ("aiohttp", AiohttpUpstream)):
        figures = [uvloop.run(run(client, calls, concurrency)) for _ in range(3)]
        print(f"{name:8} {min(figures):6.1f} µs (best of 3; {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    main()
