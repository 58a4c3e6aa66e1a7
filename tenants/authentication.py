"""How the management API (/api/) knows its caller: a user's management token.

Sent as `Authorization: Token <token>` (the form Portico has always taken) or
`Authorization: Bearer <token>`. A token is looked up by its prefix and
compared as a keyed hash in constant time (`tenants.selectors`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from tenants.selectors import management_token_user

_SCHEMES = {b"token", b"bearer"}


class ManagementTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in _SCHEMES:
            return None  # no token: the permission check answers 401
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid token header: give 'Token <token>'.")
        try:
            presented = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        user = management_token_user(presented=presented)
        if user is None or not user.is_active:
            raise AuthenticationFailed("Invalid token.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return "Token"


class ManagementTokenScheme(OpenApiAuthenticationExtension):
    """How the schema describes the token to clients and their generators."""

    target_class = ManagementTokenAuthentication
    name = "managementToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>` or `Bearer <token>`; see `portico createapitoken`.",
        }
