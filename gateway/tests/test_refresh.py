"""The background loops: a loop that fails is logged and restarted, never left dead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

import pytest

from gateway import refresh


async def test_a_background_loop_that_fails_is_logged_and_restarted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(refresh, "_RETRY", 0)
    runs: list[int] = []
    running = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("boom")
        running.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="gateway.refresh"):
        task = asyncio.create_task(refresh._supervised("test loop", flaky))
        async with asyncio.timeout(2):
            await running.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert runs == [0, 1]
    assert "background test loop stopped unexpectedly" in caplog.text


async def test_cancelling_a_supervised_loop_stops_it() -> None:
    task = asyncio.create_task(refresh._supervised("idle loop", lambda: asyncio.Event().wait()))
    await asyncio.sleep(0)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


def test_key_use_keeps_the_latest_time_of_each_key_and_gives_it_back_as_a_datetime() -> None:
    log = refresh.KeyUseLog()
    log.touch(1)
    first = log.take()
    assert list(first) == [1]
    assert abs(first[1] - datetime.now(UTC)) < timedelta(seconds=5)

    log.touch(1)
    newer = log.take()[1]
    log.restore({1: first[1] - timedelta(hours=1)})  # a failed write of an older time
    log.touch(2)
    log.restore({2: newer - timedelta(hours=1)})  # older than the time recorded meanwhile: it loses

    again = log.take()
    assert again[1] == first[1] - timedelta(hours=1)
    assert again[2] > newer - timedelta(hours=1)
    assert log.take() == {}
