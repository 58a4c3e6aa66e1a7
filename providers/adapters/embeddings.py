"""OpenAI's `encoding_format: "base64"` for embeddings, applied by Portico itself.

Some upstreams (Ollama among them) only answer with float lists. OpenAI's base64
form is the vector as little-endian float32 values, base64-encoded; the OpenAI
SDKs ask for it by default and decode it back, so Portico must produce exactly
those bytes whatever the upstream sent.
"""

from __future__ import annotations

import base64
import struct
from typing import Any


def encode_vector(vector: list[float]) -> str:
    """One embedding as OpenAI's base64 string: little-endian float32 values, whatever the host's byte order."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def encode_embeddings(body: dict[str, Any], encoding_format: str) -> dict[str, Any]:
    """An OpenAI embeddings body with its float vectors in `encoding_format`.

    Only "base64" changes anything; vectors that are already strings (an upstream
    that encoded them itself) are left as they are. The given body is not changed.
    """
    if encoding_format != "base64":
        return body
    data = [
        {**item, "embedding": encode_vector(item["embedding"])} if isinstance(item.get("embedding"), list) else item
        for item in body.get("data") or ()
    ]
    return {**body, "data": data}
