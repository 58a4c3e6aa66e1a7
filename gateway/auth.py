"""API key authentication for the OpenAI surface, served from the snapshot."""

from __future__ import annotations

import time

from django.http import HttpRequest

from gateway.errors import AuthenticationFailed
from gateway.refresh import key_use
from gateway.snapshot import store
from tenants.facade import KeyGrant, authenticate

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an api-key header."
)
_INCORRECT = "Incorrect API key provided. Check the key, or ask your Portico operator for a new one."


def presented_key(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        return ""
    return request.META.get("HTTP_API_KEY")


async def api_key_auth(request: HttpRequest) -> KeyGrant:
    """Ninja auth callback: the key's grant, or AuthenticationFailed (never echoing the key)."""
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(_MISSING)
    snapshot = await store.get()
    grant = authenticate(snapshot.keys, key, time.time())
    if grant is None:
        raise AuthenticationFailed(_INCORRECT)
    key_use.touch(grant.key_id)
    return grant
