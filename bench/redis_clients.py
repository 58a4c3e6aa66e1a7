"""CPU cost of the limiter's acquire + settle, over the hand-written RESP client and over redis-py with hiredis.

    .venv/bin/python bench/redis_clients.py [--pairs 20000] [--rounds 3] [--redis redis://127.0.0.1:6379/0]

Each round runs, for both clients in turn (alternating, so drift in the machine
hits both alike), N acquire/settle pairs of one API key with an RPM, a TPM and
a concurrency limit, first one pair at a time, then 32 at a time on the one
event loop. It prints microseconds of process CPU time per pair (Portico's and
the client's, not Redis's), and the best of the rounds. Keys live under a
prefix of their own and are deleted afterwards. It needs hiredis, which
Portico does not depend on (`.venv/bin/pip install hiredis`): without it
redis-py parses in Python and the comparison would flatter the hand-written client.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench")

import django  # noqa: E402

django.setup()

from redis.asyncio import Redis  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

from billing.limits import Ask, RedisLimiter, Window  # noqa: E402
from billing.limits.clients import LimiterClient, RedisPyClient  # noqa: E402
from billing.limits.resp import RespClient  # noqa: E402

CONCURRENCIES = (1, 32)
WINDOW = Window(scope="key:1", label="this API key", rpm=10**9, tpm=10**12, concurrency=10**6)


def hand_written(url: str) -> LimiterClient:
    return RespClient(url, timeout=1.0)


def redis_py(url: str) -> LimiterClient:
    if not HIREDIS_AVAILABLE:
        raise SystemExit("install hiredis first: .venv/bin/pip install hiredis")
    return RedisPyClient(Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0))


CLIENTS: dict[str, Callable[[str], LimiterClient]] = {"hand-written": hand_written, "redis-py+hiredis": redis_py}


async def pairs(limiter: RedisLimiter, count: int, concurrency: int) -> float:
    """Process CPU seconds per acquire/settle pair, `concurrency` pairs at a time."""
    ids = itertools.count()

    async def one_pair() -> None:
        ask = Ask(request_id=f"r{next(ids)}", windows=(WINDOW,), budgets=(), tokens=100, cost=0)
        verdict = await limiter.acquire(ask)
        if verdict.ticket is None:
            raise RuntimeError(f"the limiter refused a pair: {verdict.message}")
        await limiter.settle_soon(verdict.ticket, tokens=90, cost=0)

    async def worker(share: int) -> None:
        for _ in range(share):
            await one_pair()

    for _ in range(200):  # warm up: connection, script cache
        await one_pair()
    started = time.process_time()
    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (count // concurrency * concurrency)


async def measure(name: str, url: str, count: int, concurrency: int, prefix: str) -> float:
    limiter = RedisLimiter(url, prefix=prefix, cluster=False, client=CLIENTS[name](url), socket_timeout=1.0)
    try:
        return await pairs(limiter, count, concurrency)
    finally:
        await limiter.aclose()


async def main(url: str, count: int, rounds: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for number in range(1, rounds + 1):
            order = list(CLIENTS) if number % 2 else list(reversed(CLIENTS))
            for concurrency in CONCURRENCIES:
                for name in order:
                    seconds = await measure(name, url, count, concurrency, prefix)
                    results.setdefault((name, concurrency), []).append(seconds)
                    print(f"round {number}  concurrency {concurrency:>2}  {name:<17} {seconds * 1e6:7.1f} us/pair")
    finally:
        client = Redis.from_url(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    print("\nbest of the rounds (us of CPU per acquire + settle):")
    for concurrency in CONCURRENCIES:
        hand, py = (min(results[(name, concurrency)]) * 1e6 for name in CLIENTS)
        ratio = py / hand
        print(f"  concurrency {concurrency:>2}: hand-written {hand:6.1f}   redis-py+hiredis {py:6.1f}   ({ratio:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.redis, options.pairs, options.rounds))
