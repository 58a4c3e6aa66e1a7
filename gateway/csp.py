"""A Content-Security-Policy for the admin console and the tenant portal.

Django has no CSP of its own before 6.0. The admin's pages load their scripts
and styles from Portico's own static files; the policy allows exactly that
(inline styles too, which the admin's templates use), so an injected script
or a framing page gets nowhere. Portico's admin templates keep their scripts
in static files for this reason. /v1/ never passes through here: it runs on
the fast path.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
ADMIN_PATH = "/admin/"
PORTAL_PATH = "/portal/"  # the portal's templates hold no script at all, and styles only in its stylesheet


class AdminContentSecurityPolicyMiddleware(MiddlewareMixin):
    """MiddlewareMixin keeps it usable both ways, so the ASGI handler runs the chain without a thread hop."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if request.path.startswith((ADMIN_PATH, PORTAL_PATH)):
            response.setdefault("Content-Security-Policy", POLICY)
        return response
