"""The call's deadline bounds a stream's continuations, counted from the call's start.

A public model with mid-stream recovery and a `timeout` on the fleet's loopback
upstreams: the first deployment stalls after its first events, the second
carries the stream on. A continuation still relaying when the deadline passes is
cut there with a timeout error event; one that would only start after the
deadline never starts, and the stream ends with the error of what broke it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from openai import OpenAI

from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.behaviours import Reply, Stall
from tests.fakes.fleet import FakeFleet
from tests.integration.test_stream_recovery import BROKEN, Read, ledger_rows
from tests.servers import PorticoServer, Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

DEADLINE = 2.0
SLOW = " ".join(f"word{number}" for number in range(40))  # at 0.3 s an event, 12 s: far past the deadline


@pytest.fixture
def sdk(portico: PorticoServer, key: IssuedKey) -> Iterator[OpenAI]:
    with portico.client(key.plaintext, timeout=10) as client:
        yield client


def test_a_continuation_still_relaying_at_the_deadline_is_cut_with_a_timeout_event(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"dl-{tag}"
    upstreams[0].script(upstream_model, Stall(after=3, content=BROKEN))
    upstreams[1].script(upstream_model, Reply(SLOW, delay=0.3))
    urls = [upstreams[0].base_url, upstreams[1].base_url]
    deploy(f"gpt-dl-{tag}", upstream_model, urls=urls, stall_timeout=0.5, mid_stream_recovery=True, timeout=DEADLINE)
    settle()

    began = time.monotonic()
    read = Read(sdk, f"gpt-dl-{tag}")

    assert read.text.startswith("this streamword0")  # the first deployment's words, then the continuation's
    assert "word39" not in read.text
    assert read.error_code == "upstream_timeout"
    assert read.error is not None
    assert f"deadline of {DEADLINE:g} s" in read.error.message
    assert DEADLINE * 0.9 <= read.ended_at - began < DEADLINE + 1.0
    assert upstreams.served_by(upstream_model) == ["fake-1", "fake-2"]
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.error_type, row.attempts) == (504, "upstream_timeout", 2)


def test_a_continuation_that_would_start_after_the_deadline_does_not_start(
    sdk: OpenAI, deploy: Deploy, upstreams: FakeFleet, settle: Settle, tag: str
) -> None:
    upstream_model = f"dl-{tag}"
    upstreams[0].script(upstream_model, Stall(after=3, content=BROKEN))
    urls = [upstreams[0].base_url, upstreams[1].base_url]
    # The stall is noticed 1.5 s after the last event, the deadline is at 1 s: nothing may start then.
    deploy(f"gpt-dl-{tag}", upstream_model, urls=urls, stall_timeout=1.5, mid_stream_recovery=True, timeout=1.0)
    settle()

    read = Read(sdk, f"gpt-dl-{tag}")

    assert read.text == "this stream"
    assert read.error_code == "upstream_timeout"
    assert read.error is not None
    assert "mid-stream" in read.error.message  # the stall's own error event
    assert upstreams[1].received(upstream_model) == []
    [row] = ledger_rows(read.request_id)
    assert (row.status, row.error_type, row.attempts) == (504, "upstream_stall", 1)
