"""What failing over from a refused connection adds to a request.

Starts its own Portico (`python -m gateway.server`, as production runs it) on a
throwaway SQLite database with two public models served by the built-in mock
provider: `direct` by one deployment, `failover` by a deployment whose provider
listens nowhere (a loopback port that refuses connections) and then the same
mock deployment. It sends the same requests to both, one at a time, and prints
the median and p90 latency of each and their difference: the cost of the
refused attempt, its breaker bookkeeping and the second decision.

The failing deployment's breaker is held closed (as in bench/run.sh's failover
variant), or it would open after a few calls and the difference would vanish.

    .venv/bin/python bench/failover_overhead.py [REQUESTS]     # default 300
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parent.parent
BODY = {"model": "", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed() -> str:
    """The two models and a key; returns the key's plaintext."""
    from providers.services import provider_create, public_model_create
    from tenants.services import api_key_create, tenant_create

    mock = provider_create(name="mock", kind="mock")
    nowhere = provider_create(name="nowhere", kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    public_model_create(public_id="direct", deployments=[{"provider": mock, "upstream_model": "mock-echo"}])
    public_model_create(
        public_id="failover",
        retry_on=["connect", "timeout", "5xx"],
        deployments=[
            {"provider": nowhere, "upstream_model": "mock-echo", "priority": 0},
            {"provider": mock, "upstream_model": "mock-echo", "priority": 1},
        ],
    )
    tenant = tenant_create(name="bench", slug="bench")
    return api_key_create(tenant=tenant, name="bench")[1]


def timings(client: httpx.Client, model: str, count: int, attempts: str) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post("/v1/chat/completions", json={**BODY, "model": model})
        samples.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-portico-attempts"] == attempts, answer.headers  # it did fail over
    return samples


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    data = Path(tempfile.mkdtemp(prefix="portico-failover-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}",
        "PORTICO_DATA_DIR": str(data),
        "SECRET_KEY": "bench-only",
        "PORTICO_LOG_LEVEL": "WARNING",
        "PORTICO_BREAKER_CONSECUTIVE_FAILURES": "0",
        "PORTICO_BREAKER_MIN_REQUESTS": "1000000000",
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
    }
    env.pop("REDIS_URL", None)
    os.environ.update(
        {name: env[name] for name in ("DATABASE_URL", "PORTICO_DATA_DIR", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")}
    )
    os.environ.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True)
    import django

    django.setup()
    key = seed()
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway.server", "--port", str(port)], cwd=PROJECT, env=env
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {key}"}) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/v1/models").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Portico did not start"
                time.sleep(0.1)
            timings(client, "direct", 20, "1")  # warm both paths up
            timings(client, "failover", 20, "2")
            # Interleaved rounds, so a change in the machine's load weighs on both alike.
            direct: list[float] = []
            failover: list[float] = []
            for _ in range(10):
                direct += timings(client, "direct", count // 10, "1")
                failover += timings(client, "failover", count // 10, "2")
    finally:
        server.terminate()
        server.wait(10)
    for name, samples in (("direct", direct), ("failover", failover)):
        cuts = statistics.quantiles(samples, n=10)
        print(f"{name:9} median {statistics.median(samples) * 1000:6.2f} ms   p90 {cuts[-1] * 1000:6.2f} ms")
    added = (statistics.median(failover) - statistics.median(direct)) * 1000
    print(f"failing over from a refused connection adds {added:.2f} ms at the median ({count} requests each)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT))
    sys.exit(main())
