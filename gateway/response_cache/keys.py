"""The cache key of a request: who asks, which model, and what was asked, normalised and hashed.

Two requests share a key only if their bodies are the same JSON once keys are
sorted and the fields that cannot change the answer are dropped:

    stream, stream_options   how the answer is delivered: a stored answer is streamed or not as asked
    user                     an end-user id kept for abuse monitoring; the model never sees it

Everything else counts, sampling settings included (`temperature`, `seed`,
`n`...): this is an exact cache, and the operator opted in to serving the
same answer again. A field left out is the same as its default only where the
answer is the same byte for byte whichever is sent: an embeddings request with
no `encoding_format` gets floats, as one that asks for "float" does. The
tenant's id and the public model are hashed with the body and lead the key, so
no two tenants ever share an entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})
# Per operation, the defaults a request may leave out and get the very same answer (see the module docstring).
DEFAULTS: dict[str, dict[str, Any]] = {"embeddings": {"encoding_format": "float"}}


def cache_key(*, tenant_id: int, public_id: str, operation: str, body: Mapping[str, Any]) -> str:
    """`<tenant id>:<blake2b of the tenant, model, operation and normalised body>`."""
    asked = {name: value for name, value in body.items() if name not in IGNORED_FIELDS}
    if (defaults := DEFAULTS.get(operation)) is not None:
        asked = {**defaults, **asked}
    # OPT_SORT_KEYS sorts every object's keys, nested ones too: the same request in any key order hashes alike.
    material = orjson.dumps([tenant_id, public_id, operation, asked], option=orjson.OPT_SORT_KEYS)
    return f"{tenant_id}:{hashlib.blake2b(material, digest_size=20).hexdigest()}"
