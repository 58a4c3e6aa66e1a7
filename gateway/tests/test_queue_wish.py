"""What a request asks of the queue: its headers read once, in OpenAI's words when Portico cannot read them."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest

from gateway.errors import InvalidRequest
from gateway.queueing.wish import QueueWish, kept_headers, queue_wish
from gateway.tests.test_accounting import GRANT
from tenants.facade import QueuePolicy

DEFERS = dataclasses.replace(GRANT, queue=QueuePolicy(mode="async"))


def request(**headers: str) -> ASGIRequest:
    raw = [(name.lower().replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"", "headers": raw}
    return ASGIRequest(scope, io.BytesIO(b"{}"))


def wish(body: dict[str, Any] | None = None, grant: Any = DEFERS, **headers: str) -> QueueWish | None:
    return queue_wish(request(**headers), body or {}, grant)


def test_a_request_without_queue_headers_asks_nothing() -> None:
    assert wish(x_portico_provider="azure") is None


@pytest.mark.parametrize(
    "headers",
    [{"prefer": "respond-async"}, {"prefer": "wait=10, respond-async"}, {"x_portico_async": "true"}],
)
def test_prefer_respond_async_or_the_portico_header_asks_for_a_job(headers: dict[str, str]) -> None:
    found = wish(**headers)

    assert found is not None
    assert found.asynchronous
    assert found.request is not None


def test_a_queue_timeout_is_read_in_seconds() -> None:
    found = wish(x_portico_queue_timeout="0.25")

    assert found == QueueWish(timeout=0.25, request=found.request if found else None)


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_queue_timeout_portico_cannot_read_is_a_400_naming_it(value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        wish(x_portico_queue_timeout=value)

    assert refused.value.param == "x-portico-queue-timeout"


def test_a_streamed_request_asking_for_a_job_is_a_400_naming_stream_when_jobs_are_on() -> None:
    with pytest.raises(InvalidRequest) as refused:
        wish({"stream": True}, prefer="respond-async")

    assert refused.value.param == "stream"
    # A key without jobs ignores the preference (RFC 7240): the stream is served as ever.
    assert wish({"stream": True}, GRANT, prefer="respond-async") is not None


def test_a_job_keeps_the_routing_headers_but_not_its_queue_headers() -> None:
    meta = request(x_portico_provider="azure", x_portico_queue_timeout="1", x_portico_async="true").META

    assert kept_headers(meta) == {"HTTP_X_PORTICO_PROVIDER": "azure"}
