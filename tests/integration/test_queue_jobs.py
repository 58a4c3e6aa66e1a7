"""Asynchronous jobs: a request over its limits that asks to respond asynchronously is kept, run by a worker later.

The servers have a broker (their REDIS_URL), so a job runs only in a real
`portico worker` process on the servers' broker keys: one for the module.
The tenant's limit is one request in flight, held by a request the fake
answers slowly. (A worker killed mid-job: test_queue_jobs_restart.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion

from billing.models import RateLimit, UsageRecord
from providers.models import ModelRoute
from queueing.models import QueuedJob
from tenants.models import Tenant
from tenants.services import queue_policy_set
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.celery_processes import CeleryWorker, worker_command
from tests.conftest import SERVER_REDIS_PREFIX
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

HELLO = [{"role": "user", "content": "Answer me later"}]
WORKER_ENV = {"PORTICO_REDIS_PREFIX": SERVER_REDIS_PREFIX, "PORTICO_LOG_LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def worker(celery_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    hostname = f"queue-{time.monotonic_ns()}@localhost"
    command = worker_command(hostname=hostname, concurrency=2, queues="interactive", include=(), options=())
    log_path = tmp_path_factory.mktemp("queue-worker") / "worker.log"
    process = CeleryWorker(command, env={**celery_env, **WORKER_ENV}, log_path=log_path, hostname=hostname)
    process.start()
    try:
        process.wait_until_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def jobs_cleaned() -> Iterator[None]:
    yield
    QueuedJob.objects.all().delete()


def async_tenant(slug: str, *, max_wait: int = 30) -> Tenant:
    tenant = make_tenant(slug=slug)
    queue_policy_set(owner=tenant, queue_mode="async", queue_max_wait=max_wait)
    RateLimit.objects.create(tenant=tenant, max_concurrent=1)
    return tenant


def chat(server: PorticoServer, key: IssuedKey, route: ModelRoute, **headers: str) -> httpx.Response:
    return server.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}", **headers},
        json={"model": route.public_id, "messages": HELLO, "max_tokens": 8},
        timeout=30,
    )


def eventually(check: Callable[[], Any], *, within: float = 20.0, what: str = "it") -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        time.sleep(0.05)
    return found


def hold_the_slot(
    pool: ThreadPoolExecutor, upstream: FakeUpstream, server: PorticoServer, key: IssuedKey, route: ModelRoute
) -> Future[httpx.Response]:
    held = pool.submit(chat, server, key, route)
    eventually(lambda: len(upstream.received(route.upstream_model)) == 1, what="the first request upstream")
    return held


def poll(server: PorticoServer, key: IssuedKey, location: str, *, within: float = 30.0) -> httpx.Response:
    """GET the job until it is no longer waiting (202)."""
    deadline = time.monotonic() + within
    while True:
        answer = server.http.get(location, headers={"Authorization": f"Bearer {key.plaintext}"})
        if answer.status_code != 202:
            return answer
        assert answer.json()["object"] == "queue.job"
        assert time.monotonic() < deadline, f"the job is still {answer.json()['status']}"
        time.sleep(0.1)


def test_a_request_over_its_limit_becomes_a_job_that_a_worker_answers_for_its_tenant_only(
    portico: PorticoServer,
    worker: CeleryWorker,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    tenant = async_tenant(f"jobs-{tag}")
    owner, teammate = make_key(tenant=tenant, name="owner"), make_key(tenant=tenant, name="teammate")
    outsider = make_key(tenant=async_tenant(f"other-{tag}"), name="outsider")
    upstream.script(upstream_route.upstream_model, Reply("answered later", first_byte=0.5))
    settle()

    with ThreadPoolExecutor(max_workers=2) as pool, portico.client(owner.plaintext) as client:
        held = hold_the_slot(pool, upstream, portico, owner, upstream_route)
        raw = client.chat.completions.with_raw_response.create(
            model=upstream_route.public_id, messages=HELLO, max_tokens=8, extra_headers={"Prefer": "respond-async"}
        )
        assert held.result().status_code == 200

    accepted = raw.http_response
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["id"].startswith("qjob_")
    assert (job["object"], job["status"], job["model"]) == ("queue.job", "queued", upstream_route.public_id)
    assert accepted.headers["location"] == f"/v1/queue/{job['id']}"
    assert accepted.headers["preference-applied"] == "respond-async"

    answer = poll(portico, owner, accepted.headers["location"])
    assert answer.status_code == 200, answer.text
    completion = ChatCompletion.model_validate(answer.json())
    assert completion.choices[0].message.content == "answered later"
    assert answer.headers["x-portico-queue-status"] == "completed"
    waited = int(answer.headers["x-portico-queue-time"])
    assert waited > 0
    # The teammate reads it too; another tenant's key finds no such job.
    assert portico.http.get(accepted.headers["location"], headers={"api-key": teammate.plaintext}).json() == (
        answer.json()
    )
    elsewhere = portico.http.get(accepted.headers["location"], headers={"api-key": outsider.plaintext})
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["code"] == "job_not_found"
    assert "Job not found" in elsewhere.json()["error"]["message"]

    assert len(upstream.received(upstream_route.upstream_model)) == 2
    row = eventually(lambda: UsageRecord.objects.filter(request_id=job["id"]).first(), what="the job's ledger row")
    assert (row.status, row.queue_ms, row.api_key_id) == (200, waited, owner.api_key.pk)
    stored = QueuedJob.objects.get(pk=job["id"])
    assert (stored.status, stored.attempts, stored.result_status) == ("completed", 1, 200)


def test_a_job_whose_deadline_passes_before_capacity_frees_expires_with_a_clear_error(
    portico: PorticoServer,
    worker: CeleryWorker,
    upstream: FakeUpstream,
    upstream_route: ModelRoute,
    settle: Settle,
    tag: str,
    jobs_cleaned: None,
) -> None:
    key = make_key(tenant=async_tenant(f"expires-{tag}"), name="expires")
    upstream.script(upstream_route.upstream_model, Reply("too late", first_byte=3.0))
    settle()

    with ThreadPoolExecutor(max_workers=2) as pool:
        held = hold_the_slot(pool, upstream, portico, key, upstream_route)
        accepted = chat(portico, key, upstream_route, **{"x-portico-async": "true", "x-portico-queue-timeout": "1"})
        assert accepted.status_code == 202
        answer = poll(portico, key, accepted.headers["location"])
        assert held.result().status_code == 200

    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["code"] == "queue_expired"
    assert "did not admit it within 1 s" in error["message"]
    assert answer.headers["x-portico-queue-status"] == "expired"
    assert len(upstream.received(upstream_route.upstream_model)) == 1  # the job was never sent
    job_id = accepted.json()["id"]
    row = eventually(lambda: UsageRecord.objects.filter(request_id=job_id).first(), what="the expiry's ledger row")
    assert (row.status, row.error_type) == (429, "queue_expired")
    assert 900 <= row.queue_ms < 3000


def test_a_streamed_request_cannot_ask_to_respond_asynchronously(
    portico: PorticoServer, upstream_route: ModelRoute, settle: Settle, tag: str
) -> None:
    key = make_key(tenant=async_tenant(f"stream-{tag}"), name="stream")
    settle()

    answer = portico.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}", "Prefer": "respond-async"},
        json={"model": upstream_route.public_id, "messages": HELLO, "stream": True},
    )

    assert answer.status_code == 400
    assert (answer.json()["error"]["param"], answer.json()["error"]["code"]) == ("stream", "invalid_value")


def test_a_request_with_room_is_answered_at_once_though_it_asked_to_respond_asynchronously(
    portico: PorticoServer, upstream: FakeUpstream, upstream_route: ModelRoute, settle: Settle, tag: str
) -> None:
    key = make_key(tenant=async_tenant(f"room-{tag}"), name="room")
    upstream.script(upstream_route.upstream_model, Reply("right away"))
    settle()

    answer = chat(portico, key, upstream_route, Prefer="respond-async")

    assert answer.status_code == 200
    assert ChatCompletion.model_validate(answer.json()).choices[0].message.content == "right away"
    assert "preference-applied" not in answer.headers
