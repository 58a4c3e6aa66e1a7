"""Which provider kind serves a handle, and the provider base URL it implies.

A handle is the path, relative to the source's base URL, of the endpoint that
serves one model: `/anthropic/v1/messages`, `/openai/v1/chat/completions`. A
source's rules map it to a kind, first match wins; the provider's base URL is
then the handle without what that kind's adapter appends for a chat call, so
the adapter rebuilds exactly the handle:

    /openai/v1/chat/completions    -> kind openai,    base  /openai/v1     (+ /chat/completions)
    /anthropic/v1/messages         -> kind anthropic, base  /anthropic/v1  (+ /messages)
    /cohere/v2/chat                -> kind cohere,    base  /cohere        (+ /v2/chat)

Gemini and Replicate put the model in the chat path, so the handle names it too:

    /gemini/v1beta/models/gemini-2.5-flash:generateContent  -> kind gemini,    base /gemini
    /replicate/v1/models/meta/llama-3-8b/predictions         -> kind replicate, base /replicate
    /replicate/v1/predictions  (a version: the model is owner/name:version)  -> kind replicate, base /replicate

A handle no rule matches, or one that does not end with its kind's chat path,
is refused with a reason; it is never guessed. For the kinds above, the
adapter calls the handle only when the entry's model is the one the handle
names: `model_mismatch` says when it is not.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

# What each kind's adapter appends to its provider's base URL for a chat call (tested against the adapters).
# OpenAI-compatible servers are kind `openai`; Azure's per-deployment URLs and the mock have no place in a list.
CHAT_PATHS = {"openai": "/chat/completions", "anthropic": "/messages", "ollama": "/api/chat", "cohere": "/v2/chat"}

# Kinds whose chat path names the model, as their adapters build it (tested against them). The model is
# the `model` group; it holds only characters the adapters send unescaped. Gemini's version is the one its
# adapter uses when the provider names none: a list's providers name none. Whole answers only: a stream's
# path (`:streamGenerateContent`) is not a model's handle.
_SEGMENT = r"[A-Za-z0-9._~-]+"
MODEL_CHAT_PATHS = {
    "gemini": re.compile(rf"/v1beta/models/(?P<model>{_SEGMENT}):generateContent"),
    "replicate": re.compile(rf"/v1(?:/models/(?P<model>{_SEGMENT}/{_SEGMENT}))?/predictions"),
}
HANDLE_KINDS = frozenset(CHAT_PATHS) | frozenset(MODEL_CHAT_PATHS)
# A whole handle: one or more segments of base (as few as will do), then the kind's chat path.
_BASE_THEN = {kind: re.compile(rf"(?P<base>(?:/[^/]+)+?){path.pattern}") for kind, path in MODEL_CHAT_PATHS.items()}

# A handle is a plain absolute path: no query, fragment, empty or dot segments, nothing to escape.
_HANDLE = re.compile(r"^(/[A-Za-z0-9._~:@!$&'()*+,;=-]+)+$")
HANDLE_MAX = 500


def default_handle_kinds() -> list[dict[str, str]]:
    return [
        {"prefix": "/openai/", "kind": "openai"},
        {"suffix": "/v1/messages", "kind": "anthropic"},
        {"prefix": "/fireworks/", "kind": "openai"},
        {"suffix": "/chat/completions", "kind": "openai"},
        {"prefix": "/gemini/", "kind": "gemini"},
        {"suffix": ":generateContent", "kind": "gemini"},
        {"prefix": "/cohere/", "kind": "cohere"},
        {"suffix": "/v2/chat", "kind": "cohere"},
        {"prefix": "/replicate/", "kind": "replicate"},
        {"suffix": "/predictions", "kind": "replicate"},
    ]


def validate_handle_kinds(value: Any) -> None:
    """A list of rules, each `{"prefix": ...}` or `{"suffix": ...}` with a `kind` a list may name."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of rules.")
    for position, rule in enumerate(value, start=1):
        if not isinstance(rule, dict) or set(rule) not in ({"prefix", "kind"}, {"suffix", "kind"}):
            raise ValidationError(f'Rule {position}: give {{"prefix": "/path/", "kind": ...}} or a "suffix".')
        pattern = rule.get("prefix", rule.get("suffix"))
        # A suffix may also be a method of Google's APIs, which follows the model after a colon.
        starts = ("/", ":") if "suffix" in rule else ("/",)
        if not isinstance(pattern, str) or not pattern.startswith(starts):
            raise ValidationError(f"Rule {position}: a prefix must start with '/', a suffix with '/' or ':'.")
        if rule["kind"] not in HANDLE_KINDS:
            raise ValidationError(f"Rule {position}: the kind must be one of {', '.join(sorted(HANDLE_KINDS))}.")


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
    if kind in MODEL_CHAT_PATHS:
        return _model_chat_path(handle, kind)[0]
    suffix = CHAT_PATHS[kind]
    if not handle.endswith(suffix) or len(handle) == len(suffix):
        return ""
    return handle[: -len(suffix)]


def model_mismatch(handle: str, kind: str, model: str) -> str:
    """Why the adapter, given `model`, would not call `handle`, or "". Only kinds whose chat path names
    the model can disagree with one; a handle that is not its kind's shape at all is `base_path`'s to refuse."""
    if kind not in MODEL_CHAT_PATHS:
        return ""
    base, named = _model_chat_path(handle, kind)
    if not base:
        return ""
    if kind == "gemini":
        # A route may name a Gemini model with the `models/` prefix Gemini lists it by; the path never has it.
        model = model.removeprefix("models/")
    elif not named:
        # `/v1/predictions` runs one version of a model, which only the model's name can give.
        name, _, version = model.partition(":")
        return "" if name and version else f"{handle} runs a version: the model must be named owner/name:version"
    return "" if model == named else f"{handle} calls {named}, not {model}"


def _model_chat_path(handle: str, kind: str) -> tuple[str, str]:
    """The base path before a model-naming chat path at the end of `handle`, and the model it names."""
    match = _BASE_THEN[kind].fullmatch(handle)
    if match is None:
        return "", ""
    base = match.group("base")
    # Replicate's adapter takes a trailing /v1 off its base URL: such a base would lose it.
    if kind == "replicate" and base.endswith("/v1"):
        return "", ""
    return base, match.group("model") or ""


def first_segment(handle: str) -> str:
    return handle.strip("/").split("/", 1)[0]


def join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path
