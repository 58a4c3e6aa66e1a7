"""API key authentication for the OpenAI surface, served from the snapshot."""

from __future__ import annotations

import time

from django.http import HttpRequest

from gateway.errors import AuthenticationFailed
from gateway.refresh import key_use
from gateway.snapshot import store
from tenants.facade import KeyGrant, authenticate, is_unknown_key

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


class _UnknownKeyReloads:
    """At most one snapshot reload per `gap` seconds on behalf of keys the snapshot has never seen.

    A key created a moment ago (by `portico createkey` in another process, or the console) reaches this
    process's snapshot only at its next rebuild; one reload answers its first request instead of a 401.
    The gap bounds what a stream of made-up keys can cost: one query per second per process.
    """

    def __init__(self, gap: float = 1.0) -> None:
        self.gap = gap
        self._last = float("-inf")

    def claim(self, now: float) -> bool:
        if now - self._last < self.gap:
            return False
        self._last = now
        return True


unknown_key_reloads = _UnknownKeyReloads()


async def grant_for(key: str) -> KeyGrant | None:
    """The grant for a presented key, from the snapshot; None if the key is not usable."""
    snapshot = await store.get()
    now = time.time()
    grant = authenticate(snapshot.keys, key, now)
    if grant is None and is_unknown_key(snapshot.keys, key) and unknown_key_reloads.claim(time.monotonic()):
        grant = authenticate((await store.reload()).keys, key, now)
    return grant


async def api_key_auth(request: HttpRequest) -> KeyGrant:
    """Ninja auth callback: the key's grant, or AuthenticationFailed (never echoing the key)."""
    key = presented_key(request)
    if key is None:
        raise AuthenticationFailed(_MISSING)
    grant = await grant_for(key)
    if grant is None:
        raise AuthenticationFailed(_INCORRECT)
    key_use.touch(grant.key_id)
    return grant
