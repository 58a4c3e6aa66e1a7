"""Which provider kind serves a handle, and the provider base URL it implies.

A handle is the path, relative to the source's base URL, of the endpoint that
serves one model: `/anthropic/v1/messages`, `/openai/v1/chat/completions`. A
source's rules map it to a kind, first match wins; the provider's base URL is
then the handle without what that kind's adapter appends for a chat call, so
the adapter rebuilds exactly the handle:

    /openai/v1/chat/completions    -> kind openai,    base  /openai/v1     (+ /chat/completions)
    /anthropic/v1/messages         -> kind anthropic, base  /anthropic/v1  (+ /messages)

A handle no rule matches, or one that does not end with its kind's chat path,
is refused with a reason; it is never guessed.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

# What each kind's adapter appends to its provider's base URL for a chat call (tested against the adapters).
# OpenAI-compatible servers are kind `openai`; Azure's per-deployment URLs and the mock have no place in a list.
CHAT_PATHS = {"openai": "/chat/completions", "anthropic": "/messages", "ollama": "/api/chat"}

# A handle is a plain absolute path: no query, fragment, empty or dot segments, nothing to escape.
_HANDLE = re.compile(r"^(/[A-Za-z0-9._~:@!$&'()*+,;=-]+)+$")
HANDLE_MAX = 500


def default_handle_kinds() -> list[dict[str, str]]:
    return [
        {"prefix": "/openai/", "kind": "openai"},
        {"suffix": "/v1/messages", "kind": "anthropic"},
        {"prefix": "/fireworks/", "kind": "openai"},
        {"suffix": "/chat/completions", "kind": "openai"},
    ]


def validate_handle_kinds(value: Any) -> None:
    """A list of rules, each `{"prefix": ...}` or `{"suffix": ...}` with a `kind` a list may name."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of rules.")
    for position, rule in enumerate(value, start=1):
        if not isinstance(rule, dict) or set(rule) not in ({"prefix", "kind"}, {"suffix", "kind"}):
            raise ValidationError(f'Rule {position}: give {{"prefix": "/path/", "kind": ...}} or a "suffix".')
        pattern = rule.get("prefix", rule.get("suffix"))
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ValidationError(f"Rule {position}: the prefix or suffix must be a path starting with '/'.")
        if rule["kind"] not in CHAT_PATHS:
            raise ValidationError(f"Rule {position}: the kind must be one of {', '.join(sorted(CHAT_PATHS))}.")


def handle_problem(handle: str) -> str:
    """Why `handle` is not a path Portico will join onto a base URL, or ""."""
    if len(handle) > HANDLE_MAX:
        return f"the handle is longer than {HANDLE_MAX} characters"
    if not _HANDLE.fullmatch(handle) or any(part in {".", ".."} for part in handle.split("/")):
        return "the handle is not a plain absolute path"
    return ""


def kind_for(handle: str, rules: list[dict[str, str]]) -> str:
    """The kind of the first rule that matches `handle`, or "" when none does."""
    for rule in rules:
        if ("prefix" in rule and handle.startswith(rule["prefix"])) or (
            "suffix" in rule and handle.endswith(rule["suffix"])
        ):
            return rule["kind"]
    return ""


def base_path(handle: str, kind: str) -> str:
    """The handle without the chat path its kind appends; "" when it does not end with it."""
    suffix = CHAT_PATHS[kind]
    if not handle.endswith(suffix) or len(handle) == len(suffix):
        return ""
    return handle[: -len(suffix)]


def first_segment(handle: str) -> str:
    return handle.strip("/").split("/", 1)[0]


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path
