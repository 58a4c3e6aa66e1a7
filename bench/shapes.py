"""CPU cost of bringing loose OpenAI-compatible chat answers to OpenAI's exact shapes.

    .venv/bin/python bench/shapes.py [--chunks 50000] [--answers 20000]

The OpenAI-kind adapter checks each chat chunk and whole answer (`providers.adapters.shapes`)
and shapes the ones that are not exact; a provider flagged `exact_shapes` skips both. This
times the adapter's own path as the relay calls it, the provider's redactor and the model
renaming included: `PassThrough.feed` for a chunk, `OpenAIAdapter.response` for a whole
answer (about 150 words), each exact as OpenAI sends it, loose as some compatible servers
send it, and with the flag on. It prints microseconds of process CPU time per chunk and per
answer, the best of five runs, so a scheduler hiccup does not count.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench-shapes-only")
os.environ.setdefault("DATABASE_URL", "sqlite://:memory:")
django.setup()

from providers.adapters.openai import OpenAIAdapter  # noqa: E402
from providers.adapters.shapes import chunk_is_exact, completion_is_exact  # noqa: E402
from providers.adapters.wire import model_rewriter  # noqa: E402
from providers.tests.factories import make_provider_info  # noqa: E402
from providers.values import Target  # noqa: E402

RUNS = 5
PUBLIC_MODEL = "house-model"
UPSTREAM_MODEL = "gpt-4o-2024-08-06"
WORDS = " ".join(f"word{i}" for i in range(150))

# A content chunk as OpenAI sends it, and as a loosely compatible server does: no `logprobs`,
# `"system_fingerprint": null`, `"tool_calls": null` in the delta.
_HEAD = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "created": 1741570283, "model": UPSTREAM_MODEL}
EXACT_CHUNK = orjson.dumps(
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [{"index": 0, "delta": {"content": " Paris"}, "logprobs": None, "finish_reason": None}],
    }
)
LOOSE_CHUNK = orjson.dumps(
    {
        **_HEAD,
        "object": "chat.completion.chunk",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": {"content": " Paris", "tool_calls": None}, "finish_reason": None}],
    }
)
_USAGE = {"prompt_tokens": 19, "completion_tokens": 150, "total_tokens": 169}
EXACT_ANSWER = orjson.dumps(
    {
        **_HEAD,
        "object": "chat.completion",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": WORDS, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            **_USAGE,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
)
LOOSE_ANSWER = orjson.dumps(
    {
        **_HEAD,
        "object": "chat.completion",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": WORDS, "tool_calls": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {**_USAGE, "prompt_tokens_details": None, "completion_tokens_details": None},
    }
)

SHAPED = make_provider_info(name="loose", credential="sk-bench-shapes-credential")
EXACT = dataclasses.replace(SHAPED, exact_shapes=True)


def check_inputs() -> None:
    """The figures mean something only if the checks take these inputs for what they are meant to be."""
    target = Target(SHAPED, UPSTREAM_MODEL, PUBLIC_MODEL)
    shaped_chunk = orjson.loads(b"".join(stream_feed(SHAPED)(LOOSE_CHUNK)))
    shaped_answer = orjson.loads(OpenAIAdapter().response("chat", target, LOOSE_ANSWER))
    for what, holds in (
        ("the exact chunk is exact", chunk_is_exact(orjson.loads(EXACT_CHUNK))),
        ("the loose chunk is not", not chunk_is_exact(orjson.loads(LOOSE_CHUNK))),
        ("the exact answer is exact", completion_is_exact(orjson.loads(EXACT_ANSWER))),
        ("the loose answer is not", not completion_is_exact(orjson.loads(LOOSE_ANSWER))),
        ("the loose chunk is shaped", chunk_is_exact(shaped_chunk) and shaped_chunk["model"] == PUBLIC_MODEL),
        ("the loose answer is shaped", completion_is_exact(shaped_answer) and shaped_answer["model"] == PUBLIC_MODEL),
    ):
        if not holds:
            raise SystemExit(f"bench/shapes.py measures nothing: it is not true that {what}")


def stream_feed(provider: Any) -> Callable[[bytes], Any]:
    """A fresh stream's `feed`, as the relay gets it for a chat stream that did not ask for usage."""
    target = Target(provider, UPSTREAM_MODEL, PUBLIC_MODEL)
    translator = OpenAIAdapter().stream_translator("chat", target, include_usage=False, redactor=provider.redactor)
    return translator.feed


def per_chunk_us(provider: Any, event: bytes, chunks: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        feed = stream_feed(provider)
        start = time.process_time_ns()
        for _ in range(chunks):
            for _relayed in feed(event):
                pass
        best = min(best, (time.process_time_ns() - start) / chunks / 1000)
    return best


def per_answer_us(provider: Any, payload: bytes, answers: int) -> float:
    adapter, target = OpenAIAdapter(), Target(provider, UPSTREAM_MODEL, PUBLIC_MODEL)
    best = float("inf")
    for _ in range(RUNS):
        start = time.process_time_ns()
        for _ in range(answers):
            adapter.response("chat", target, payload)
        best = min(best, (time.process_time_ns() - start) / answers / 1000)
    return best


def rename_us(payload: bytes, count: int) -> float:
    """The model's renaming alone, on the bytes, as an exact chunk or answer gets it."""
    rewrite = model_rewriter(PUBLIC_MODEL)
    best = float("inf")
    for _ in range(RUNS):
        start = time.process_time_ns()
        for _ in range(count):
            rewrite(payload)
        best = min(best, (time.process_time_ns() - start) / count / 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--answers", type=int, default=20_000)
    args = parser.parse_args()
    check_inputs()
    cases = (
        ("exact", SHAPED, EXACT_CHUNK, EXACT_ANSWER),
        ("loose", SHAPED, LOOSE_CHUNK, LOOSE_ANSWER),
        ("exact_shapes on, loose", EXACT, LOOSE_CHUNK, LOOSE_ANSWER),
    )
    print(f"{args.chunks} chunks and {args.answers} whole answers per run, best of {RUNS} runs")
    print(f"{'case':<24} {'us/chunk':>10} {'us/answer':>10}")
    for name, provider, chunk, answer in cases:
        chunk_us = per_chunk_us(provider, chunk, args.chunks)
        answer_us = per_answer_us(provider, answer, args.answers)
        print(f"{name:<24} {chunk_us:>10.2f} {answer_us:>10.2f}")
    renames = rename_us(EXACT_CHUNK, args.chunks), rename_us(EXACT_ANSWER, args.answers)
    print(f"{'model renamed, alone':<24} {renames[0]:>10.2f} {renames[1]:>10.2f}")
    print(f"chunk bytes: {len(EXACT_CHUNK)} exact, {len(LOOSE_CHUNK)} loose")
    print(f"answer bytes: {len(EXACT_ANSWER)} exact, {len(LOOSE_ANSWER)} loose")


if __name__ == "__main__":
    main()
