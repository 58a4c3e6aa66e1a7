"""What operators watch, through real servers: /metrics, x-portico-overhead-ms, the request log, gzip.

Two Portico processes share one metrics directory, as the workers of one
`portico serve` do, so a scrape of either adds up both; `portico serve
--workers 2` itself is started once too. Clients are the official `openai`
SDK (httpx underneath, which asks for gzip and decodes it) against the fake
OpenAI upstream.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from gateway.observability.registry import sized_files
from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PROJECT_ROOT, START_TIMEOUT, PorticoServer, Settle, free_port, serving

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Hello"}]
WAIT = 10.0  # seconds a figure may take to reach /metrics or the ledger
BURST = 6  # concurrent calls at a time, so that both workers of a server get some
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def observed_env(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **server_env,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics")),
        "PORTICO_LOG_FORMAT": "json",
        "PORTICO_METRICS_INTERVAL": "0.05",
    }


@pytest.fixture(scope="module")
def first(observed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    yield from serving(observed_env, tmp_path_factory.mktemp("observed-1") / "server.log")


@pytest.fixture(scope="module")
def second(observed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PorticoServer]:
    yield from serving(observed_env, tmp_path_factory.mktemp("observed-2") / "server.log")


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape_until(server: PorticoServer, done: Callable[[Samples], bool]) -> Samples:
    deadline = time.monotonic() + WAIT
    while True:
        response = server.http.get("/metrics")
        assert response.status_code == 200, response.text
        found = samples(response.text)
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics did not get there in {WAIT:g} s:\n{response.text}")
        time.sleep(0.05)


def ledger_overhead(request_id: str) -> int | None:
    deadline = time.monotonic() + WAIT
    while (row := UsageRecord.objects.filter(request_id=request_id).first()) is None:
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        time.sleep(0.05)
    return row.overhead_ms


# --- /metrics, across two processes ---


def test_metrics_count_sdk_calls_with_their_labels_summed_over_both_processes(
    first: PorticoServer, second: PorticoServer, settle: Settle, upstream_route: ModelRoute, key: IssuedKey
) -> None:
    settle(first, second)
    model, provider = upstream_route.public_id, upstream_route.provider.name
    with first.client(key.plaintext) as one, second.client(key.plaintext) as other:
        for sdk in (one, one, other):
            sdk.chat.completions.create(model=model, messages=HELLO)
        for _chunk in other.chat.completions.create(model=model, messages=HELLO, stream=True):
            pass
        with pytest.raises(openai.BadRequestError):
            other.chat.completions.create(model=model, messages=HELLO, max_tokens=-1)

    labels = {"model": model, "provider": provider}
    ok = {**labels, "status_class": "2xx", "error_class": ""}
    found = scrape_until(first, lambda found: sample(found, "portico_requests_total", **ok) == 4)

    assert sample(found, "portico_request_latency_seconds_count", **labels) == 4
    assert sample(found, "portico_time_to_first_token_seconds_count", **labels) == 1
    assert (sample(found, "portico_prompt_tokens_total", **labels) or 0) >= 4
    assert (sample(found, "portico_completion_tokens_total", **labels) or 0) >= 4
    assert (sample(found, "portico_overhead_seconds_count") or 0) >= 4
    # The refused parameter never reached a deployment: counted, without a model, as a 4xx.
    assert (
        sample(found, "portico_requests_total", model="", provider="", status_class="4xx", error_class="") or 0
    ) >= 1
    deployment = f"{provider}/{upstream_route.upstream_model}"
    assert sample(found, "portico_breaker_state", deployment=deployment, model=model) == 0
    assert sample(found, "portico_snapshot_age_seconds") is not None
    assert sample(found, "portico_ledger_spool_pending_rows") is not None
    # Both processes wrote their own files to the directory the scrape added up.
    assert (
        len({path.name.rsplit("_", 1)[1] for path in Path(first.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db")})
        == 2
    )


# --- x-portico-overhead-ms ---


def test_the_overhead_leaves_the_upstream_out_and_is_the_ledgers(
    first: PorticoServer, settle: Settle, upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey
) -> None:
    settle(first)
    upstream.script(upstream_route.upstream_model, Reply("Slow to start, quick after", first_byte=0.4))
    with first.client(key.plaintext) as sdk:
        started = time.monotonic()
        whole = sdk.chat.completions.with_raw_response.create(model=upstream_route.public_id, messages=HELLO)
        took = time.monotonic() - started
        streamed = sdk.chat.completions.with_raw_response.create(
            model=upstream_route.public_id, messages=HELLO, stream=True
        )
        for _chunk in streamed.parse():
            pass

    assert took >= 0.4
    for raw in (whole, streamed):
        overhead = int(raw.headers["x-portico-overhead-ms"])
        assert 0 <= overhead < 200  # the 400 ms the upstream took to answer are not Portico's
        assert ledger_overhead(raw.headers["x-request-id"]) == overhead


# --- the request log ---


def test_each_request_is_one_json_line_without_the_key(
    first: PorticoServer, settle: Settle, upstream_route: ModelRoute, key: IssuedKey
) -> None:
    settle(first)
    with first.client(key.plaintext) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(model=upstream_route.public_id, messages=HELLO)
    request_id = raw.headers["x-request-id"]

    deadline = time.monotonic() + WAIT
    while not (lines := [line for line in first.log().splitlines() if request_id in line]):
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)

    (line,) = lines
    record = orjson.loads(line)
    assert record["logger"] == "portico.requests"
    assert record["tenant"] == key.api_key.tenant.slug
    assert record["key_prefix"] == key.api_key.prefix
    assert record["model"] == upstream_route.public_id
    assert record["status"] == 200
    assert record["prompt_tokens"] > 0
    assert record["overhead_ms"] == int(raw.headers["x-portico-overhead-ms"])
    assert {"latency_ms", "first_token_ms", "cost_usd", "deployment", "error_class"} <= set(record)
    assert key.plaintext not in first.log()


# --- gzip ---


def test_large_answers_are_gzipped_for_clients_that_ask_and_streams_never(
    first: PorticoServer, settle: Settle, upstream: FakeUpstream, upstream_route: ModelRoute, key: IssuedKey
) -> None:
    settle(first)
    long_text = " ".join(["Portico relays this sentence many times over."] * 60)
    upstream.script(upstream_route.upstream_model, Reply(long_text))
    body = {"model": upstream_route.public_id, "messages": HELLO}
    auth = {"Authorization": f"Bearer {key.plaintext}"}

    with first.client(key.plaintext) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(**body)  # type: ignore[arg-type]
        streamed = sdk.chat.completions.with_raw_response.create(**body, stream=True)  # type: ignore[arg-type]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed.parse() if chunk.choices)
    identity = first.http.post("/v1/chat/completions", json=body, headers={**auth, "Accept-Encoding": "identity"})
    with httpx.Client(base_url=first.base_url, headers={**auth, "Accept-Encoding": "gzip"}) as plain:
        with plain.stream("POST", "/v1/chat/completions", json=body) as answer:
            wire = b"".join(answer.iter_raw())  # as sent, not decoded
        small = plain.get("/v1/models")

    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"].lower() == "accept-encoding"
    assert raw.parse().choices[0].message.content == long_text  # httpx decoded it for the SDK
    assert streamed.headers.get("content-encoding") is None
    assert text == long_text
    assert identity.headers.get("content-encoding") is None
    assert identity.json()["choices"][0]["message"]["content"] == long_text
    assert orjson.loads(gzip.decompress(wire))["choices"][0]["message"]["content"] == long_text
    assert small.headers.get("content-encoding") is None  # under 1 KiB


# --- `portico serve --workers 2` ---


def test_serve_with_two_workers_adds_up_both_in_a_fresh_directory(
    server_env: dict[str, str], tmp_path: Path, settle: Settle, upstream_route: ModelRoute, key: IssuedKey
) -> None:
    settle()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"\0" * 64)  # an earlier run's: wiped at start
    port = free_port()
    env = {**os.environ, **server_env, "PORTICO_METRICS_DIR": str(metrics_dir), "PORTICO_METRICS_INTERVAL": "0.05"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]
    command += ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base, process, log)

        def call(_: int) -> None:
            response = httpx.post(  # a new connection each: the workers take them as the kernel hands them out
                f"{base}/v1/chat/completions",
                json={"model": upstream_route.public_id, "messages": HELLO},
                headers={"Authorization": f"Bearer {key.plaintext}"},
            )
            assert response.status_code == 200, response.text

        # Which worker accepts a connection is the kernel's choice, and one that answers fast may take them all
        # one after another: calls go in concurrent bursts until both workers have counted some.
        calls, deadline = 0, time.monotonic() + WAIT
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            while _workers_with_served_calls(metrics_dir) < 2:
                assert time.monotonic() < deadline, f"one worker served all {calls} calls"
                list(pool.map(call, range(BURST)))
                calls += BURST
                time.sleep(0.1)  # the workers' metrics are written every PORTICO_METRICS_INTERVAL
        labels = {"model": upstream_route.public_id, "provider": upstream_route.provider.name}
        ok = {**labels, "status_class": "2xx", "error_class": ""}
        deadline = time.monotonic() + WAIT
        while sample(found := samples(httpx.get(f"{base}/metrics").text), "portico_requests_total", **ok) != calls:
            assert time.monotonic() < deadline, f"the workers' counts do not add up to {calls}: {found}"
            time.sleep(0.05)
        assert not (metrics_dir / "counter_1.db").exists()
        assert len({path.name for path in metrics_dir.glob("counter_*.db")}) == 2  # one per worker
    finally:
        _stop(process, log)


def _workers_with_served_calls(metrics_dir: Path) -> int:
    """How many workers' counter files hold a successful call: a file alone may hold only the 401s of the probes
    that waited for the server, or counters made at start."""
    served = 0
    # Read as a scrape reads them: a worker's file is empty for a moment after the worker creates it.
    for path in sized_files(str(metrics_dir)):
        if not os.path.basename(path).startswith("counter_"):
            continue
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):
            name, _, labels, _ = orjson.loads(key)
            if name == "portico_requests" and labels.get("status_class") == "2xx" and value > 0:
                served += 1
                break
    return served


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as an orchestrator stops it; a server still up 20 s later is killed, so it cannot hold the test
    database for the tests after this one, and the failure shows what its log said."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"`portico serve --workers 2` did not stop within 20 s of SIGTERM; its log ends:\n{tail}")


def _wait_for(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"portico serve exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/v1/models").status_code == 401:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"portico serve did not answer:\n{log.read_text()}")
