"""GET /metrics: Prometheus' text format, for allowed scrapers only (access.py)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.errors import AuthenticationFailed, MethodNotAllowed, NotFound, PorticoError, error_response
from gateway.observability import gauges, registry
from gateway.observability.access import ScrapeAccess, networks
from gateway.observability.handoff import hand_off


@functools.cache
def scrape_access() -> ScrapeAccess:
    return ScrapeAccess(allow=networks(settings.PORTICO_METRICS_ALLOW), token=settings.PORTICO_METRICS_TOKEN)


def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.PORTICO_METRICS:
        return error_response(NotFound("Invalid URL (GET /metrics)"))
    if request.method not in ("GET", "HEAD"):
        error: PorticoError = MethodNotAllowed(f"Method {request.method} is not allowed on /metrics.")
        error.headers["Allow"] = "GET, HEAD"
        return error_response(error)
    verdict = scrape_access().check(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_AUTHORIZATION", ""))
    if verdict == "network":
        return error_response(
            PorticoError(
                "Metrics are not served to this address (PORTICO_METRICS_ALLOW).",
                status=403,
                type="invalid_request_error",
                code="metrics_forbidden",
            )
        )
    if verdict == "token":
        error = AuthenticationFailed("A valid metrics token is required (Authorization: Bearer).", code="invalid_token")
        error.headers["WWW-Authenticate"] = "Bearer"
        return error_response(error)
    # This process's own requests, counted up to now, and its gauges as they are now.
    hand_off.drain()
    gauges.sample(hand_off.metrics)
    return HttpResponse(registry.scrape(), content_type=CONTENT_TYPE_LATEST)
