"""The batch runner's own rules, without a server: the key a batch runs with, the waits after a refusal, and
where its coroutines may be run from. (Running lines is tested end to end in test_batches.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from batches.facade import BatchRun
from gateway import batch_runner
from gateway.snapshot import Snapshot
from tenants.facade import KeyGrant

BATCH = BatchRun(
    id="batch_x",
    tenant_id=1,
    api_key_id=7,
    key_prefix="pk-abcdefgh",
    endpoint="/v1/chat/completions",
    status="in_progress",
    expires_at=time.time() + 3600,
    not_before=None,
)


def grant(**fields: Any) -> KeyGrant:
    values: dict[str, Any] = {
        "key_id": 7,
        "prefix": "pk-abcdefgh",
        "tenant_id": 1,
        "tenant_slug": "acme",
        "digest": "x",
        "expires_at": None,
        "allowed_models": None,
    }
    return KeyGrant(**{**values, **fields})


@pytest.mark.parametrize(
    ("keys", "usable"),
    [
        ({"pk-abcdefgh": grant()}, True),
        ({}, False),  # revoked, or its tenant deactivated: not in the snapshot
        ({"pk-abcdefgh": grant(key_id=8)}, False),  # the prefix now names another key
        ({"pk-abcdefgh": grant(expires_at=time.time() - 1)}, False),
    ],
)
def test_a_batch_runs_with_the_key_that_created_it_while_that_key_may_call(keys: dict, usable: bool) -> None:
    found = batch_runner._grant(Snapshot(keys=keys), BATCH)
    assert (found is not None) is usable


def test_refusals_wait_the_limiters_time_doubling_while_they_go_on_up_to_the_most(settings: Any) -> None:
    settings.PORTICO_BATCH_RETRY_MAX_SECONDS = 5
    chunk = batch_runner._Chunk(BATCH, "t", None, asyncio.Event())
    waits = []
    for _ in range(5):
        chunk._wait(0.5)
        waits.append(round(chunk.resume_at - time.time()))
        chunk._wait(0.5)  # a refusal while already waiting changes nothing
        assert round(chunk.resume_at - time.time()) == waits[-1]
        chunk.resume_at = 0.0  # the wait is over
    assert waits == [1, 2, 4, 5, 5]
    chunk._wait(3)  # the limiter asks for more than the doubling: its Retry-After wins
    assert chunk.resume_at - time.time() > 4.9


async def test_lines_cannot_be_run_from_the_loop_they_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = batch_runner.Runtime()
    monkeypatch.setattr(runtime, "loop", asyncio.get_running_loop)

    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="own thread"):
        runtime.run(nothing, timeout=1)
