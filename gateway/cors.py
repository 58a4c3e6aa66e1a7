"""CORS for browser clients of /v1/, from each tenant's list of origins (docs/cors.md).

A preflight carries no key, so it cannot be answered per tenant: an origin that
any tenant lists may preflight, and the real request then gets
Access-Control-Allow-Origin only if its key's tenant lists that origin, which
is what a browser checks before it lets the page read the answer. Other origins
get no CORS headers at all, and the browser keeps the answer from the page.

The lists reach the hot path in each key's grant (tenants.facade.KeyGrant), so
no request queries the database; a request without an Origin header costs one
dict lookup here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.http import HttpResponseBase
from django.utils.cache import patch_vary_headers

from tenants.facade import KeyGrant

ANY_ORIGIN = "*"
MAX_AGE = 600  # seconds a browser may reuse a preflight's answer
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = ", ".join(
    (
        "authorization",
        "api-key",
        "content-type",
        "x-api-key",
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",  # the Anthropic SDK's browser opt-in
        "openai-beta",
        "openai-organization",
        "openai-project",
        "x-request-id",
        "cache-control",  # the response cache's no-cache / no-store (docs/response-cache.md)
        # Portico's own request headers (routing wishes, deadlines, queueing).
        "x-portico-async",
        "x-portico-capabilities",
        "x-portico-max-cost-per-token",
        "x-portico-model-family",
        "x-portico-models",
        "x-portico-provider",
        "x-portico-queue-timeout",
        "x-portico-timeout",
        # What the official SDKs add to every request when they run in a browser.
        "x-stainless-arch",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-retry-count",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-timeout",
    )
)
# A page reads only the safelisted response headers unless told otherwise.
EXPOSE_HEADERS = ", ".join(
    (
        "x-request-id",
        "retry-after",
        "x-portico-async",
        "x-portico-attempts",
        "x-portico-cache",
        "x-portico-cache-creation-tokens",
        "x-portico-cost",
        "x-portico-deployment",
        "x-portico-ensemble",
        "x-portico-overhead-ms",
        "x-portico-provider",
        "x-portico-queue-status",
        "x-portico-queue-time",
        "x-portico-routing",
        "x-portico-upstream-id",
        "x-portico-usage",
        "x-portico-votes",
        *(f"x-ratelimit-{what}-{unit}" for what in ("limit", "remaining", "reset") for unit in ("requests", "tokens")),
    )
)


def preflight_headers(origin: str | None, allowed: bool) -> list[tuple[bytes, bytes]]:
    """A preflight's answer headers: the grant of the origin only when some tenant lists it."""
    headers = [(b"vary", b"origin")]
    if allowed and origin is not None:
        headers += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(MAX_AGE).encode()),
        ]
    return headers


def preflight_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Origin of a CORS preflight (an OPTIONS with Origin and Access-Control-Request-Method), else None."""
    origin: str | None = None
    asks = False
    for name, value in headers:
        if name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"access-control-request-method":
            asks = True
    return origin if asks else None


class PreflightOrigins:
    """Every origin some tenant lists, worked out once per snapshot (which is swapped whole, never changed)."""

    def __init__(self) -> None:
        self._grants: Mapping[str, KeyGrant] | None = None
        self._origins: frozenset[str] = frozenset()

    def allows(self, grants: Mapping[str, KeyGrant], origin: str) -> bool:
        if grants is not self._grants:
            self._origins = frozenset().union(*(grant.cors_origins for grant in grants.values()))
            self._grants = grants
        return origin in self._origins or ANY_ORIGIN in self._origins


preflight_origins = PreflightOrigins()


def grant_allows(grant: object, origin: str) -> bool:
    """Whether the request's key (Ninja's `request.auth`, if the key was accepted) may be used from `origin`."""
    if not isinstance(grant, KeyGrant):
        return False
    origins = grant.cors_origins
    return origin in origins or ANY_ORIGIN in origins


def allow_origin(response: HttpResponseBase, origin: str) -> None:
    """Let the page at `origin` read `response`, and every header Portico adds to it."""
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    patch_vary_headers(response, ("Origin",))
