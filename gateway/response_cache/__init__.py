"""The exact response cache: an answer served again to the same tenant asking the same model the same thing.

Off unless a cache policy (caching.facade) enables it for the call's tenant
and public model. Then, for chat, legacy completions and embeddings:

    Cache-Control: no-cache   the cache is not read; the fresh answer replaces the stored one   bypass
                   no-store   the cache is neither read nor written                             bypass
    otherwise                 a stored answer is served (gateway.response_cache.hits)          hit
                              or the call is routed as usual, and its answer stored            miss

(the last column is the answer's `x-portico-cache` header; no header: not cached.)
Only answers that completed (every choice with a finish reason other than a
content filter's; for embeddings, a vector for every item) are stored, and no larger than
PORTICO_RESPONSE_CACHE_ENTRY_BYTES; a streamed miss is relayed as it comes
and stored once it has ended (gateway.response_cache.assembly). A stored
answer is served whole or as a stream, as each request asks. An embeddings
answer is stored and served again byte for byte, vectors and all, as its first
client got it (gateway.response_cache.embeddings). The key is
gateway.response_cache.keys'; the store Redis or this process's memory
(gateway.response_cache.stores).
"""

from __future__ import annotations

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from gateway.accounting import Call
from gateway.extensions import Extensions
from gateway.relay import put_headers
from gateway.response_cache.assembly import keep_streamed
from gateway.response_cache.embeddings import embeddings_entry
from gateway.response_cache.hits import answer_hit
from gateway.response_cache.keys import cache_key
from gateway.response_cache.replies import ANSWER_OBJECTS, storable
from gateway.response_cache.stores import answer_store
from gateway.routing import serve
from gateway.snapshot import Snapshot
from gateway.sse import EventStream

_BYPASS = frozenset({"no-cache", "no-store"})
CACHED_OPERATIONS = frozenset({*ANSWER_OBJECTS, "embeddings"})


def client_directives(header: str) -> frozenset[str]:
    """The Cache-Control directives of a request that turn the cache off (no-cache, no-store)."""
    if not header:
        return frozenset()
    return frozenset(part.strip().lower() for part in header.split(",")) & _BYPASS


async def serve_cached(
    request: HttpRequest, call: Call, snapshot: Snapshot, ext: Extensions
) -> HttpResponse | EventStream:
    """Serve the call from the cache when its policy allows and the answer is stored; else route it."""
    rule = snapshot.caching.rule_for(call.grant.tenant_id, call.model.public_id)
    if rule is None or call.operation not in CACHED_OPERATIONS:
        return await serve(call, snapshot, ext)
    directives = client_directives(request.META.get("HTTP_CACHE_CONTROL", ""))
    key = cache_key(
        tenant_id=call.grant.tenant_id, public_id=call.model.public_id, operation=call.operation, body=call.body
    )
    if not directives and (stored := await answer_store().get(key)) is not None:
        return await answer_hit(call, snapshot.billing, ext, rule, stored)
    response = await serve(call, snapshot, ext)
    if "no-store" not in directives:
        if isinstance(response, EventStream):
            keep_streamed(response, call, lambda answer: _store(call, key, orjson.dumps(answer), rule.ttl))
        elif response.status_code == 200:
            await _store(call, key, response.content, rule.ttl)
    put_headers(response, {"x-portico-cache": "bypass" if directives else "miss"})
    return response


async def _store(call: Call, key: str, content: bytes, ttl: int) -> None:
    if len(content) > settings.PORTICO_RESPONSE_CACHE_ENTRY_BYTES:
        return
    if call.operation == "embeddings":
        entry = embeddings_entry(content, request_id=call.request_id)
    else:
        entry = content if storable(call.operation, content) else None
    if entry is not None:
        await answer_store().put(key, entry, ttl)
