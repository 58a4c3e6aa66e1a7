"""Opens an audit scope for each request to the admin, the management API and the tenant portal.

Other paths pass straight through: /v1/ changes no setting (and normally runs on the fast path,
which no middleware sees). The client's address is REMOTE_ADDR, which the server has already taken
from X-Forwarded-For when the peer is a trusted proxy (uvicorn's FORWARDED_ALLOW_IPS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from audit.context import Actor, AuditScope, audit_scope
from audit.kinds import ActorKind, AuditOrigin

_ORIGINS = (("/admin/", AuditOrigin.ADMIN), ("/api/", AuditOrigin.API), ("/portal/", AuditOrigin.PORTAL))
_TOKEN_SCHEMES = ("token ", "bearer ")


def request_scope(request: HttpRequest) -> AuditScope | None:
    origin = next((origin for prefix, origin in _ORIGINS if request.path.startswith(prefix)), None)
    if origin is None:
        return None
    return AuditScope(
        origin=origin, remote_addr=request.META.get("REMOTE_ADDR") or None, actor=lambda: request_actor(request)
    )


def request_actor(request: HttpRequest) -> Actor:
    """The signed-in user, or the management token the API authenticated (it sets request.user too)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Actor(label="anonymous", kind=ActorKind.ANONYMOUS)
    name = user.get_username()
    authorization = request.headers.get("Authorization", "").lower()
    if request.path.startswith("/api/") and authorization.startswith(_TOKEN_SCHEMES):
        token = getattr(user, "management_token", None)  # its public prefix, the way it is shown everywhere
        prefix = f"{token.prefix}…" if token is not None else "(replaced)"
        return Actor(label=f"token {prefix} of {name}", kind=ActorKind.TOKEN, user_id=user.pk)
    return Actor(label=name, kind=ActorKind.USER, user_id=user.pk)


Response = HttpResponseBase


class AuditScopeMiddleware:
    """Usable both ways, like Portico's other middleware, so the ASGI handler keeps the chain without a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Response | Awaitable[Response]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Response | Awaitable[Response]:
        if self.is_async:
            return self._acall(request)
        scope = request_scope(request)
        if scope is None:
            return self.get_response(request)
        with audit_scope(scope):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> Response:
        scope = request_scope(request)
        if scope is None:
            return await self.get_response(request)  # type: ignore[misc]
        with audit_scope(scope):
            return await self.get_response(request)  # type: ignore[misc]
