"""OpenTelemetry spans of /v1/ requests, read from the SDK's in-memory exporter (gateway/observability/tracing.py).

Portico runs in-process (through httpx.ASGITransport) so its spans land in this
process's exporter; the upstream is the real fake OpenAI server, which records
the `traceparent` it receives.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pytest_django import Settings

from gateway.observability import tracing
from gateway.tests.test_fastpath import run_in_process, started_portico
from providers.models import ModelRoute
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.openai_upstream import FakeUpstream

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install -e '.[otel]'")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def route(upstream: FakeUpstream, owner: IssuedKey) -> ModelRoute:
    provider = make_provider(kind="openai", name="traced", base_url=upstream.base_url, credential=secrets.token_hex(8))
    return make_route(provider=provider, public_id="traced-gpt", upstream_model=f"traced-{secrets.token_hex(4)}")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert tracing.setup(provider)
    yield exporter
    tracing.shutdown()
    provider.shutdown()


@pytest.fixture
async def portico(
    route: ModelRoute, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    run_in_process(settings, monkeypatch)
    async with started_portico() as client:
        yield client


def _chat(owner: IssuedKey, *, stream: bool = False) -> dict[str, object]:
    body = {"model": "traced-gpt", "messages": [{"role": "user", "content": "trace me"}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return {"headers": {"Authorization": f"Bearer {owner.plaintext}"}, "json": body}


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_and_its_upstream_attempt_are_spans_of_one_trace(
    portico: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    upstream: FakeUpstream,
    route: ModelRoute,
    owner: IssuedKey,
    stream: bool,
) -> None:
    response = await portico.post("/v1/chat/completions", **_chat(owner, stream=stream))  # type: ignore[arg-type]

    assert response.status_code == 200
    found = _by_name(spans)
    request, attempt = found["POST /v1/chat/completions"], found["upstream attempt"]
    assert request.attributes is not None
    assert attempt.attributes is not None
    assert request.attributes["portico.model"] == "traced-gpt"
    assert request.attributes["portico.tenant"] == owner.api_key.tenant.slug
    assert request.attributes["http.response.status_code"] == 200
    total_tokens = request.attributes["portico.usage.total_tokens"]
    assert isinstance(total_tokens, int)
    assert total_tokens > 0
    assert attempt.parent is not None
    assert attempt.parent.span_id == request.context.span_id
    assert attempt.attributes["portico.deployment"] == f"traced/{route.upstream_model}"
    assert attempt.attributes["portico.provider_kind"] == "openai"
    assert attempt.attributes["http.response.status_code"] == 200
    [received] = upstream.received(route.upstream_model)
    version, trace_id, span_id, _flags = received.headers["traceparent"].split("-")
    assert version == "00"
    assert int(trace_id, 16) == request.context.trace_id == attempt.context.trace_id
    assert int(span_id, 16) == attempt.context.span_id


async def test_a_request_without_a_model_is_a_span_without_one(
    portico: httpx.AsyncClient, spans: InMemorySpanExporter, owner: IssuedKey
) -> None:
    response = await portico.get("/v1/models", headers={"Authorization": f"Bearer {owner.plaintext}"})

    assert response.status_code == 200
    [span] = spans.get_finished_spans()
    assert span.name == "GET /v1/models"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert "portico.model" not in span.attributes


async def test_with_tracing_off_the_upstream_gets_no_traceparent(
    portico: httpx.AsyncClient, upstream: FakeUpstream, route: ModelRoute, owner: IssuedKey
) -> None:
    assert not tracing.state.enabled

    response = await portico.post("/v1/chat/completions", **_chat(owner))  # type: ignore[arg-type]

    assert response.status_code == 200
    [received] = upstream.received(route.upstream_model)
    assert "traceparent" not in received.headers


def test_tracing_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTICO_OTEL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not tracing.wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("PORTICO_OTEL", "true")
    assert tracing.wanted()
