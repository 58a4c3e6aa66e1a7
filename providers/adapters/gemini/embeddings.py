"""OpenAI embeddings requests as Gemini's `embedContent` (one text) or `batchEmbedContents` (several).

Gemini answers with float vectors only; a client's `encoding_format: "base64"` is honoured by the
gateway (`providers.adapters.embeddings`). Gemini's answers carry no token count as a rule, so the
gateway counts the input itself unless a `usageMetadata` says otherwise.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.adapters.base import UnsupportedParameter
from providers.adapters.shapes import token_count


def texts_of(body: dict[str, Any]) -> list[str] | str:
    """The input: one text, or a list of them; token-id input is refused (Gemini embeds text)."""
    text = body.get("input")
    if isinstance(text, str) or (isinstance(text, list) and text and all(isinstance(item, str) for item in text)):
        return text
    raise UnsupportedParameter("This model embeds text only: `input` must be a string or a list of strings.", "input")


def _request(model: str, text: str, dimensions: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
    if dimensions:
        request["outputDimensionality"] = dimensions
    return request


def embed_body(body: dict[str, Any], upstream_model: str) -> tuple[str, dict[str, Any]]:
    """The method (`embedContent` or `batchEmbedContents`) and its body."""
    texts = texts_of(body)
    dimensions = body.get("dimensions")
    if isinstance(texts, str):
        return "embedContent", _request(upstream_model, texts, dimensions)
    return "batchEmbedContents", {"requests": [_request(upstream_model, text, dimensions) for text in texts]}


def embedding_list(payload: bytes, public_model: str) -> dict[str, Any]:
    """OpenAI's embedding list for either answer; ValueError if the payload is neither."""
    try:
        answer = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError("not a Gemini embeddings answer") from exc
    if not isinstance(answer, dict):
        raise ValueError("not a Gemini embeddings answer")
    items = answer.get("embeddings") if "embeddings" in answer else [answer.get("embedding")]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError("not a Gemini embeddings answer")
    data = [
        {"object": "embedding", "index": index, "embedding": item.get("values") or []}
        for index, item in enumerate(items)
    ]
    out: dict[str, Any] = {"object": "list", "data": data, "model": public_model}
    metadata = answer.get("usageMetadata")
    tokens = token_count(metadata.get("promptTokenCount")) if isinstance(metadata, dict) else None
    if tokens:
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return out
