"""OpenTelemetry traces of /v1/ requests, when the `otel` extra is installed and asked for (docs/observability.md).

One span per request (`POST /v1/chat/completions`: model, tenant, status,
tokens) and a child span per upstream attempt (deployment, provider kind,
status), whose W3C `traceparent` goes out with the upstream request so that a
traced upstream joins the same trace.

Tracing is on when PORTICO_OTEL is true or OTEL_EXPORTER_OTLP_ENDPOINT is set,
and the extra (`pip install portico[otel]`) is installed; spans are exported by
OTLP over HTTP, configured by the standard OTEL_* variables. Off, a request pays
one boolean check at the door and one per upstream attempt, and nothing of
OpenTelemetry is imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from gateway.env import env_bool
from gateway.observability.clock import current as current_clock

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

    from providers.adapters.base import UpstreamRequest
    from providers.facade import RouteInfo

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class _State:
    __slots__ = ("enabled", "tracer")

    def __init__(self) -> None:
        self.enabled = False  # the one check a request makes when tracing is off
        self.tracer: Tracer | None = None


state = _State()


def wanted() -> bool:
    return env_bool("PORTICO_OTEL", False) or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup(provider: TracerProvider | None = None) -> bool:
    """Turn tracing on if it is asked for and installed (or with `provider`, as tests do); whether it is on."""
    if provider is None:
        if not wanted():
            return False
        provider = _exporting_provider()
        if provider is None:
            return False
    state.tracer = provider.get_tracer("portico")
    state.enabled = True
    return True


def shutdown() -> None:
    state.enabled = False
    state.tracer = None


def _exporting_provider() -> TracerProvider | None:
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning("Tracing was asked for, but the otel extra is not installed: pip install 'portico[otel]'")
        return None
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, if set, take precedence over this default name.
    provider = SdkTracerProvider(resource=Resource.create({"service.name": "portico"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


async def traced_request(app: Callable[..., Awaitable[None]], scope: Message, receive: Any, send: Send) -> None:
    """Run the request under its span, and name on it what the request came to."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert state.tracer is not None
    status = 0

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    name = f"{scope['method']} {scope['path']}"
    with state.tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", scope["method"])
        span.set_attribute("url.path", scope["path"])
        try:
            await app(scope, receive, sending)
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            _describe_call(span)


def _describe_call(span: Any) -> None:
    clock = current_clock()
    call = clock.call if clock is not None else None
    if call is None:  # no model was called: a listing, an error before routing
        return
    span.set_attribute("portico.model", call.model.public_id)
    span.set_attribute("portico.tenant", call.grant.tenant_slug)
    span.set_attribute("portico.attempts", call.attempts)
    usage = call.usage if isinstance(call.usage, dict) else {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if isinstance(usage.get(name), int):
            span.set_attribute(f"portico.usage.{name}", usage[name])


async def traced_send(
    send: Callable[[UpstreamRequest], Awaitable[Any]], route: RouteInfo, request: UpstreamRequest
) -> Any:
    """Send one upstream attempt, under a child span whose `traceparent` the upstream receives."""
    if not state.enabled:
        return await send(request)
    from opentelemetry.propagate import inject
    from opentelemetry.trace import SpanKind, Status, StatusCode

    assert state.tracer is not None
    with state.tracer.start_as_current_span("upstream attempt", kind=SpanKind.CLIENT) as span:
        span.set_attribute("portico.deployment", route.name)
        span.set_attribute("portico.deployment_id", route.id)
        span.set_attribute("portico.provider_kind", route.provider.kind)
        inject(request.headers)  # traceparent (and tracestate) of this span
        response = await send(request)
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 400:
            span.set_status(Status(StatusCode.ERROR))
        return response
