"""GET /v1/queue/{id}: the answer for each state of a job (its round trips: tests/integration/test_queue_jobs.py)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from gateway.routers.queue import JOB_ID, job_response
from queueing.facade import JobInfo

JOB = "qjob_" + "ab" * 12


def job(**fields: Any) -> JobInfo:
    now = time.time()
    defaults: dict[str, Any] = {
        "id": JOB,
        "tenant_id": 3,
        "api_key_id": 12,
        "key_prefix": "pk-test",
        "operation": "chat",
        "path": "/v1/chat/completions",
        "model": "gpt-test",
        "body": "{}",
        "status": "queued",
        "created_at": now - 1,
        "deadline": now + 29,
    }
    return JobInfo(**{**defaults, **fields})


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_job_that_waits_is_a_202_with_the_job_and_where_to_ask_again(status: str) -> None:
    answer = job_response(job(status=status, attempts=1))

    assert answer.status_code == 202
    body = orjson.loads(answer.content)
    assert (body["id"], body["object"], body["status"], body["attempts"]) == (JOB, "queue.job", status, 1)
    assert (answer["Location"], answer["Retry-After"], answer["x-portico-queue-status"]) == (
        f"/v1/queue/{JOB}",
        "1",
        status,
    )
    assert not answer.has_header("x-portico-queue-time")


def test_a_finished_job_is_its_answer_with_its_own_status_and_its_wait() -> None:
    completed = job_response(
        job(status="completed", result_status=200, result_body='{"object": "chat.completion"}', queue_ms=850)
    )
    failed = job_response(job(status="failed", result_status=400, result_body='{"error": {}}', queue_ms=10))

    assert (completed.status_code, completed.content) == (200, b'{"object": "chat.completion"}')
    assert (completed["x-portico-queue-status"], completed["x-portico-queue-time"]) == ("completed", "850")
    assert (failed.status_code, failed["x-portico-queue-status"]) == (400, "failed")


def test_a_job_still_queued_after_its_deadline_reads_as_expired() -> None:
    answer = job_response(job(status="queued", created_at=time.time() - 31, deadline=time.time() - 1))

    assert answer.status_code == 429
    assert orjson.loads(answer.content)["error"]["code"] == "queue_expired"
    assert answer["x-portico-queue-status"] == "expired"


@pytest.mark.parametrize("job_id", [JOB.upper(), JOB + "0", "qjob_\x00", "../../admin", "batch_" + "ab" * 12])
def test_only_ids_portico_makes_are_looked_up(job_id: str) -> None:
    assert JOB_ID.fullmatch(job_id) is None
