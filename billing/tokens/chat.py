"""Prompt token counting by OpenAI's rules: chat messages, tools, legacy prompts and embedding inputs.

Chat prompts follow OpenAI's cookbook: 3 tokens per message, every string field of a message counted as
text, +1 for a `name`, +3 priming the reply. Beyond it, Portico's own rules, kept stable so estimates
compare over time:
- tool (or legacy function) definitions: 12 once for the block; per function 7 + name + description,
  +3 when it has parameters; per property 3 + name + type + description, +3 + value per enum value;
  nested object properties and array items count the same way, down to 16 levels;
- an assistant's tool call (or legacy function_call): 3 + name + arguments;
- content parts: text and refusal as text, images by `image_tokens` (billing.tokens.images); audio,
  files and shapes the counter does not know count nothing. An estimate never fails a request: the
  upstream's usage report decides.

Identical prompts within a minute are not recounted: see `CountCache`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import orjson
import tiktoken

from billing.tokens.encodings import encoding_name_for, load_encoding
from billing.tokens.images import image_dimensions, image_tokens


def count_chat_prompt(body: Mapping[str, Any], *, model: str) -> int:
    """Prompt tokens of an OpenAI chat request: its messages and its tool or function definitions."""
    name = encoding_name_for(model)
    messages, tools, functions = body.get("messages"), body.get("tools"), body.get("functions")
    key = (_without_image_data(messages), tools, functions)
    return _cached("chat", name, key, lambda: _chat_tokens(load_encoding(name), messages, tools, functions))


def _without_image_data(messages: Any) -> Any:
    """The messages with each image reduced to what its count depends on, so a cache key never hashes megabytes."""
    if not isinstance(messages, list):
        return messages
    reduced = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(_is_image(part) for part in content):
            parts = [_image_part_tokens(part) if _is_image(part) else part for part in content]
            message = {**message, "content": parts}
        reduced.append(message)
    return reduced


def count_completion_prompt(prompt: str | list[Any], *, model: str) -> int:
    """Prompt tokens of a legacy completion: a string, a list of them, a token array, or a list of those."""
    name = encoding_name_for(model)
    return _cached("completion", name, prompt, lambda: _input_tokens(load_encoding(name), prompt))


def count_embedding_input(input: str | list[Any], *, model: str) -> int:
    """Tokens of an embeddings input, which takes the same shapes as a completion prompt."""
    name = encoding_name_for(model)
    return _cached("embedding", name, input, lambda: _input_tokens(load_encoding(name), input))


def _input_tokens(encoding: tiktoken.Encoding, value: Any) -> int:
    if not isinstance(value, list):
        return _tokens(encoding, value)
    if all(isinstance(item, int) for item in value):
        return len(value)
    return sum(len(item) if isinstance(item, list) else _tokens(encoding, item) for item in value)


def _chat_tokens(encoding: tiktoken.Encoding, messages: Any, tools: Any, functions: Any) -> int:
    total = 3  # the reply is primed with <|start|>assistant<|message|>
    if isinstance(messages, list):
        total += sum(_message_tokens(encoding, message) for message in messages if isinstance(message, dict))
    definitions = [tool.get("function", tool) for tool in tools or () if isinstance(tool, dict)]
    definitions += [function for function in functions or () if isinstance(function, dict)]
    if definitions:
        total += 12 + sum(_function_definition_tokens(encoding, item) for item in definitions if isinstance(item, dict))
    return total


def _message_tokens(encoding: tiktoken.Encoding, message: dict[str, Any]) -> int:
    total = 3
    for key, value in message.items():
        if isinstance(value, str):
            total += _tokens(encoding, value) + (1 if key == "name" else 0)
        elif key == "content" and isinstance(value, list):
            total += sum(_part_tokens(encoding, part) for part in value if isinstance(part, dict))
        elif key == "tool_calls" and isinstance(value, list):
            total += sum(_call_tokens(encoding, call.get("function")) for call in value if isinstance(call, dict))
        elif key == "function_call":
            total += _call_tokens(encoding, value)
    return total


def _part_tokens(encoding: tiktoken.Encoding, part: dict[str, Any]) -> int:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        return _tokens(encoding, part.get(kind))
    return _image_part_tokens(part) if kind == "image_url" else 0


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "image_url"


def _image_part_tokens(part: dict[str, Any]) -> int:
    image = part.get("image_url")
    url, detail = (image.get("url"), image.get("detail")) if isinstance(image, dict) else (image, None)
    size = image_dimensions(url) if isinstance(url, str) else None
    width, height = size if size else (None, None)
    return image_tokens(width, height, detail if isinstance(detail, str) else "auto")


def _call_tokens(encoding: tiktoken.Encoding, function: Any) -> int:
    if not isinstance(function, dict):
        return 0
    return 3 + _tokens(encoding, function.get("name")) + _tokens(encoding, function.get("arguments"))


def _function_definition_tokens(encoding: tiktoken.Encoding, function: dict[str, Any]) -> int:
    total = 7 + _tokens(encoding, function.get("name")) + _tokens(encoding, function.get("description"))
    parameters = function.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("properties"), dict):
        total += 3 + _properties_tokens(encoding, parameters["properties"], depth=0)
    return total


def _properties_tokens(encoding: tiktoken.Encoding, properties: dict[str, Any], *, depth: int) -> int:
    if depth >= 16:  # deeper schemas are rare; the cap keeps a hostile one from recursing without end
        return 0
    total = 0
    for key, schema in properties.items():
        total += 3 + _tokens(encoding, key)
        if not isinstance(schema, dict):
            continue
        kind = schema.get("type")
        total += _tokens(encoding, ",".join(map(str, kind)) if isinstance(kind, list) else kind)
        total += _tokens(encoding, schema.get("description"))
        total += sum(3 + _tokens(encoding, str(value)) for value in schema.get("enum") or ())
        for nested in (schema, schema.get("items")):
            if isinstance(nested, dict) and isinstance(nested.get("properties"), dict):
                total += _properties_tokens(encoding, nested["properties"], depth=depth + 1)
    return total


def _tokens(encoding: tiktoken.Encoding, value: Any) -> int:
    return len(encoding.encode_ordinary(value)) if isinstance(value, str) else 0


class CountCache:
    """Recent counts keyed by (kind, encoding, digest of the prompt): an LRU whose entries expire after `ttl`.

    Clients resend the same conversation prefix over and over; hashing it costs far less than
    tokenizing it again. Thread-safe: the lock is held only for dictionary operations.
    """

    def __init__(self, *, maxsize: int = 1024, ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize, self.ttl, self.clock = maxsize, ttl, clock
        self._entries: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> int | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, count: int) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl, count)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_cache = CountCache()


def _cached(kind: str, encoding_name: str, prompt: Any, count: Callable[[], int]) -> int:
    try:
        serialized = orjson.dumps(prompt)
    except TypeError:  # not JSON (orjson rejects, for one, integers past 64 bits): count without caching
        return count()
    key = (kind, encoding_name, hashlib.blake2b(serialized, digest_size=16).digest())
    cache = _cache
    cached = cache.get(key)
    if cached is None:
        cached = count()
        cache.put(key, cached)
    return cached
