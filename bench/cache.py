"""What a response-cache hit costs the server, next to a miss and to a request of a model without caching.

Starts a fake OpenAI upstream (tests/fakes, in this process) and Portico
(`python -m gateway.server`, one process, as production runs it) on a throwaway
SQLite database, with two public models on the fake: `cached`, whose cache
policy is on, and `plain`, which has none. It then sends, one at a time:

    plain   requests that all differ, to the model without caching   the cost of a request
    miss    requests that all differ, to `cached`                    looked up, routed, stored
    hit     one request again and again, to `cached`                 served from the store

and prints the server's CPU time per request (user + system, from
/proc/<pid>/stat, over every thread of the process) for each. It runs once
with the embedded store (no Redis) and, when REDIS_URL is set, once with Redis.

    .venv/bin/python bench/cache.py [REQUESTS]      # default 1000 of each kind, in 4 interleaved rounds
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parent.parent
ROUNDS = 4
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime and stime: fields 14 and 15 of stat(5)


def seed(upstream_url: str) -> str:
    """The two models and a key; returns the key's plaintext."""
    from caching.services import cache_policy_set
    from providers.services import provider_create, public_model_create
    from tenants.services import api_key_create, tenant_create

    fake = provider_create(name="fake", kind="openai", base_url=upstream_url, credential="sk-bench")
    cached = public_model_create(public_id="cached", deployments=[{"provider": fake, "upstream_model": "bench"}])
    public_model_create(public_id="plain", deployments=[{"provider": fake, "upstream_model": "bench"}])
    cache_policy_set(model=cached, ttl_seconds=3600)
    tenant = tenant_create(name="bench", slug="bench")
    return api_key_create(tenant=tenant, name="bench")[1]


def body(model: str, text: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}


def run(client: httpx.Client, pid: int, kind: str, count: int, start: int) -> float:
    """Server CPU seconds for `count` requests of one kind."""
    model = "plain" if kind == "plain" else "cached"
    before = cpu_seconds(pid)
    for n in range(start, start + count):
        text = "the same question" if kind == "hit" else f"question {kind} {n}"
        answer = client.post("/v1/chat/completions", json=body(model, text))
        assert answer.status_code == 200, answer.text
        if kind != "plain":
            assert answer.headers["x-portico-cache"] == kind, answer.headers
    return cpu_seconds(pid) - before


def measure(env: dict[str, str], key: str, count: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway.server", "--port", str(port), "--log-level", "warning"], cwd=PROJECT, env=env
    )
    spent = {"plain": 0.0, "miss": 0.0, "hit": 0.0}
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
            client.post("/v1/chat/completions", json=body("cached", "the same question"))  # stored: hits from here
            for kind in spent:  # warm every path up
                run(client, server.pid, kind, 50, start=-50)
            # Interleaved rounds, so a change in the machine's load weighs on every kind alike.
            for round_ in range(ROUNDS):
                for kind in spent:
                    spent[kind] += run(client, server.pid, kind, count // ROUNDS, start=round_ * count)
    finally:
        server.terminate()
        server.wait(10)
    return {kind: seconds / (count // ROUNDS * ROUNDS) for kind, seconds in spent.items()}


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    redis_url = os.environ.get("REDIS_URL", "")
    data = Path(tempfile.mkdtemp(prefix="portico-cache-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}",
        "PORTICO_DATA_DIR": str(data),
        "SECRET_KEY": "bench-only",
        "PORTICO_LOG_LEVEL": "WARNING",
        "PORTICO_REQUEST_LOG": "false",
        "PORTICO_REDIS_PREFIX": f"portico-cache-bench-{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "REDIS_URL": "",
    }
    os.environ.update({name: env[name] for name in ("DATABASE_URL", "PORTICO_DATA_DIR", "SECRET_KEY", "REDIS_URL")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "gateway.settings"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True)
    import django

    django.setup()
    from tests.fakes.openai_upstream import FakeUpstream

    upstream = FakeUpstream()
    upstream.start()
    try:
        key = seed(upstream.base_url)
        stores = [("in-process", "")] + ([("redis", redis_url)] if redis_url else [])
        for name, url in stores:
            per_request = measure({**env, "REDIS_URL": url}, key, count)
            figures = "   ".join(f"{kind} {seconds * 1e6:6.0f} µs" for kind, seconds in per_request.items())
            print(f"{name:10} server CPU per request: {figures}   ({count} of each)")
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT))
    sys.exit(main())
