"""The key of a Messages request, from Anthropic's header (`x-api-key`) or a bearer token.

The Anthropic SDK sends its `api_key` as `x-api-key` and an `auth_token` as
`Authorization: Bearer`; either may carry a Portico key. The grant comes from
the snapshot as on the OpenAI surface (gateway.auth.grant_for), and the key's
last use is noted the same way; only the wording of a refusal is Anthropic's.
"""

from __future__ import annotations

from django.http import HttpRequest

from gateway import auth
from gateway.errors import AuthenticationFailed
from gateway.refresh import key_use
from tenants.facade import KeyGrant

_MISSING = "x-api-key header is required (a Portico key; `Authorization: Bearer` is accepted too)."
_INCORRECT = "invalid x-api-key: check the key, or ask your Portico operator for a new one."


def presented_key(request: HttpRequest) -> str | None:
    """The key sent, "" for an Authorization header of another scheme, None for none at all."""
    key = request.META.get("HTTP_X_API_KEY")
    if key:
        return key.strip()
    header = request.META.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return None


async def messages_grant(request: HttpRequest) -> KeyGrant:
    """The grant of the request's key, set as `request.auth` as Ninja would; AuthenticationFailed otherwise."""
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(_MISSING)
    grant = await auth.grant_for(key) if key else None
    if grant is None:
        raise AuthenticationFailed(_INCORRECT)
    key_use.touch(grant.key_id)
    request.auth = grant  # type: ignore[attr-defined]
    return grant
