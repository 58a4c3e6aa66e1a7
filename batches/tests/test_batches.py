"""The batch's life as its services drive it: validation, the runner's lease, each line's claim and record,
cancelling, expiring and the output files. The runner itself is tested end to end (tests/integration)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone

from batches.facade import Answer
from batches.models import Batch, BatchLine, File
from batches.selectors import batch_lines_in_flight, batch_lines_pending, batches_overdue, batches_to_run
from batches.services.batches import batch_cancel
from batches.services.finalize import batch_finalize
from batches.services.runs import (
    batch_lease_acquire,
    batch_lease_release,
    batch_lease_renew,
    batch_line_claim,
    batch_line_record,
    batch_line_release,
    batch_lines_expire,
    batch_lines_interrupt,
)
from batches.services.validation import batch_validate
from batches.storage import storage
from batches.tests.factories import jsonl, make_batch, request_line
from tenants.tests.factories import IssuedKey

pytestmark = pytest.mark.django_db

OK = Answer(200, b'{"id": "x", "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}')
BAD = Answer(400, b'{"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": null}}')


def started(owner: IssuedKey, count: int = 3) -> Batch:
    batch = make_batch(owner.api_key, jsonl(request_line(f"r{n}", f"line {n}") for n in range(1, count + 1)))
    return batch_validate(batch_id=batch.id)


def contents(file: File | None) -> list[dict]:
    assert file is not None
    with storage().open(file.storage_key) as handle:
        return [orjson.loads(line) for line in handle.read().splitlines()]


def run_all(batch: Batch, answer: Answer = OK) -> None:
    for line in batch_lines_pending(batch_id=batch.id, limit=1000):
        assert batch_line_claim(line_id=line.id, token="t")
        assert batch_line_record(batch_id=batch.id, line_id=line.id, token="t", answer=answer)


def test_validation_turns_the_file_into_lines_and_reports_those_it_cannot_run(owner: IssuedKey) -> None:
    content = jsonl(
        [
            request_line("a"),
            b"{broken",
            request_line("b", url="/v1/embeddings"),
            request_line("a"),
            {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions"},
            request_line("d"),
        ]
    )
    batch = batch_validate(batch_id=make_batch(owner.api_key, content).id)
    assert (batch.status, batch.total, batch.failed, batch.model) == ("in_progress", 6, 4, "m")
    states = {line.number: (line.state, line.error_code) for line in batch.lines.all()}
    assert states == {
        1: ("pending", ""),
        2: ("failed", "invalid_json_line"),
        3: ("failed", "invalid_url"),
        4: ("failed", "duplicate_custom_id"),
        5: ("failed", "missing_required_parameter"),
        6: ("pending", ""),
    }
    assert batch_validate(batch_id=batch.id).total == 6  # once only
    assert BatchLine.objects.filter(batch=batch).count() == 6


def test_a_file_whose_lines_hold_a_nul_is_validated_line_by_line(owner: IssuedKey) -> None:
    """Postgres keeps no NUL in text: such a custom id, model or quoted url stopped validation for good."""
    nul_model = request_line("m")
    nul_model["body"]["model"] = "m\x00"
    content = jsonl([nul_model, request_line("a\x00b"), request_line("c", url="/v1/\x00"), request_line("d")])

    batch = batch_validate(batch_id=make_batch(owner.api_key, content).id)

    assert (batch.status, batch.total, batch.failed, batch.model) == ("in_progress", 4, 2, "m")  # the first one named
    states = {line.number: (line.state, line.error_code) for line in batch.lines.all()}
    assert states == {
        1: ("pending", ""),
        2: ("failed", "invalid_value"),
        3: ("failed", "invalid_url"),
        4: ("pending", ""),
    }
    assert "\ufffd" in batch.lines.get(number=3).error_message


@pytest.mark.parametrize(
    ("content", "code"), [(b"\n\n", "empty_file"), (jsonl(request_line(f"r{n}") for n in range(3)), "batch_too_large")]
)
def test_a_file_it_cannot_take_fails_the_batch_with_no_lines(
    owner: IssuedKey, settings: Any, content: bytes, code: str
) -> None:
    settings.PORTICO_BATCH_MAX_LINES = 2
    batch = batch_validate(batch_id=make_batch(owner.api_key, content).id)
    assert batch.status == "failed"
    assert batch.failed_at is not None
    assert batch.errors[0]["code"] == code
    assert not batch.lines.exists()


def test_an_input_file_deleted_before_validation_fails_the_batch(owner: IssuedKey) -> None:
    batch = make_batch(owner.api_key, jsonl([request_line("a")]))
    File.objects.filter(pk=batch.input_file_id).delete()
    assert batch_validate(batch_id=batch.id).errors[0]["code"] == "file_not_found"


def test_one_runner_holds_a_batch_until_its_lease_runs_out(owner: IssuedKey) -> None:
    batch = started(owner)
    assert batch_lease_acquire(batch_id=batch.id, token="first", seconds=60)
    assert not batch_lease_acquire(batch_id=batch.id, token="second", seconds=60)
    assert batch_lease_renew(batch_id=batch.id, token="first", seconds=60)
    Batch.objects.filter(pk=batch.id).update(runner_until=timezone.now() - timedelta(seconds=1))
    assert batch_lease_acquire(batch_id=batch.id, token="second", seconds=60)
    assert not batch_lease_renew(batch_id=batch.id, token="first", seconds=60)
    batch_lease_release(batch_id=batch.id, token="first")  # not its holder: changes nothing
    assert Batch.objects.get(pk=batch.id).runner == "second"


def test_a_line_is_claimed_once_and_recorded_only_under_its_claim(owner: IssuedKey) -> None:
    batch = started(owner)
    line = batch_lines_pending(batch_id=batch.id, limit=1)[0]
    assert batch_line_claim(line_id=line.id, token="mine")
    assert not batch_line_claim(line_id=line.id, token="theirs")
    assert not batch_line_record(batch_id=batch.id, line_id=line.id, token="theirs", answer=OK)
    assert batch_line_record(batch_id=batch.id, line_id=line.id, token="mine", answer=OK)
    assert not batch_line_record(batch_id=batch.id, line_id=line.id, token="mine", answer=OK)  # once
    batch.refresh_from_db()
    assert (batch.completed, batch.failed) == (1, 0)
    assert BatchLine.objects.get(pk=line.id).attempts == 1


def test_a_line_released_after_a_refusal_is_pending_again(owner: IssuedKey) -> None:
    batch = started(owner, 1)
    line = batch_lines_pending(batch_id=batch.id, limit=1)[0]
    batch_line_claim(line_id=line.id, token="t")
    batch_line_release(line_id=line.id, token="t")
    assert batch_lines_pending(batch_id=batch.id, limit=1)[0].id == line.id
    assert batch_line_claim(line_id=line.id, token="t")
    assert BatchLine.objects.get(pk=line.id).attempts == 2


def test_lines_left_in_flight_are_found_and_failed_never_pending_again(owner: IssuedKey) -> None:
    batch = started(owner, 2)
    first, second = batch_lines_pending(batch_id=batch.id, limit=2)
    batch_line_claim(line_id=first.id, token="dead")
    batch_line_claim(line_id=second.id, token="alive")
    assert [line.id for line in batch_lines_in_flight(batch_id=batch.id, except_claim="alive")] == [first.id]
    gone = Answer(None, error_code="batch_line_interrupted", error_message="stopped")
    assert batch_lines_interrupt(batch_id=batch.id, line_ids=[first.id], answer=gone) == 1
    assert not batch_line_record(batch_id=batch.id, line_id=first.id, token="dead", answer=OK)
    assert batch_lines_pending(batch_id=batch.id, limit=10) == []
    assert Batch.objects.get(pk=batch.id).failed == 1


def test_finalizing_waits_for_every_line_then_writes_both_files_in_order(owner: IssuedKey) -> None:
    batch = make_batch(owner.api_key, jsonl([request_line("a"), b"oops", request_line("b"), request_line("c")]))
    batch_validate(batch_id=batch.id)
    assert batch_finalize(batch_id=batch.id).status == "in_progress"
    lines = batch_lines_pending(batch_id=batch.id, limit=10)
    for line, answer in zip(lines, (OK, BAD, OK), strict=True):
        batch_line_claim(line_id=line.id, token="t")
        batch_line_record(batch_id=batch.id, line_id=line.id, token="t", answer=answer)
    batch = batch_finalize(batch_id=batch.id)
    assert batch.status == "completed"
    assert batch.finalizing_at is not None
    assert batch.completed_at is not None
    assert (batch.total, batch.completed, batch.failed) == (4, 2, 2)
    output = contents(batch.output_file)
    assert [(row["custom_id"], row["response"]["status_code"], row["error"]) for row in output] == [
        ("a", 200, None),
        ("c", 200, None),
    ]
    assert output[0]["id"].startswith("batch_req_")
    assert output[0]["response"]["request_id"].startswith("req_")
    assert output[0]["response"]["body"]["id"] == "x"
    errors = contents(batch.error_file)
    assert [row["custom_id"] for row in errors] == [None, "b"]
    assert errors[0]["error"]["code"] == "invalid_json_line"
    assert errors[1]["response"]["status_code"] == 400
    assert batch.usage["input_tokens"] == 6
    assert batch.usage["total_tokens"] == 10
    assert batch.output_file.purpose == "batch_output"
    assert batch_finalize(batch_id=batch.id).output_file_id == batch.output_file_id  # once


def test_cancelling_stops_pending_lines_and_ends_cancelled_with_partial_output(owner: IssuedKey) -> None:
    batch = started(owner, 3)
    first = batch_lines_pending(batch_id=batch.id, limit=1)[0]
    batch_line_claim(line_id=first.id, token="t")  # in flight while the batch is cancelled
    batch = batch_cancel(batch=batch)
    assert batch.status == "cancelling"
    assert batch.cancelling_at is not None
    assert batch_finalize(batch_id=batch.id).status == "cancelling"  # the line in flight is not done yet
    batch_line_record(batch_id=batch.id, line_id=first.id, token="t", answer=OK)
    batch = batch_finalize(batch_id=batch.id)
    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None
    assert [row["custom_id"] for row in contents(batch.output_file)] == ["r1"]
    assert {row["error"]["code"] for row in contents(batch.error_file)} == {"batch_cancelled"}
    assert batch_cancel(batch=batch).status == "cancelled"


def test_a_batch_past_its_window_expires_with_what_it_ran(owner: IssuedKey) -> None:
    batch = started(owner, 2)
    line = batch_lines_pending(batch_id=batch.id, limit=1)[0]
    batch_line_claim(line_id=line.id, token="t")
    batch_line_record(batch_id=batch.id, line_id=line.id, token="t", answer=OK)
    Batch.objects.filter(pk=batch.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert batches_overdue(now=timezone.now(), limit=10) == [batch.id]
    assert batch_lines_expire(batch_id=batch.id) == 1
    batch = batch_finalize(batch_id=batch.id)
    assert batch.status == "expired"
    assert batch.expired_at is not None
    assert [row["error"]["code"] for row in contents(batch.error_file)] == ["batch_expired"]


def test_the_sweep_restarts_batches_nobody_has_held_for_a_while(owner: IssuedKey) -> None:
    batch = started(owner)
    grace = timedelta(seconds=10)
    now = timezone.now()
    assert batch.id not in batches_to_run(now=now, limit=10, grace=grace)  # its first job is on its way
    assert batch.id in batches_to_run(now=now + grace, limit=10, grace=grace)
    batch_lease_acquire(batch_id=batch.id, token="t", seconds=60)
    assert batch.id not in batches_to_run(now=now + grace, limit=10, grace=grace)  # held
    batch_lease_release(batch_id=batch.id, token="t")
    later = timezone.now()
    assert batch_lease_acquire(batch_id=batch.id, token="next", seconds=60)  # free at once for the next chunk
    batch_lease_release(batch_id=batch.id, token="next", not_before=later + timedelta(seconds=30))
    assert batch.id not in batches_to_run(now=later + grace, limit=10, grace=grace)  # waiting out its limits
    assert batch.id in batches_to_run(now=later + timedelta(seconds=41), limit=10, grace=grace)
