"""Legacy completions served by a chat model: `prompt` in as a user message, the reply out as `text`.

For kinds (or servers) without /completions. What a chat model cannot do the
legacy way (echo, suffix, logprobs, best_of, several prompts in one request,
token-array prompts) is refused with a 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from providers.adapters.base import StreamTranslator, UnsupportedParameter

# Passed on to chat as they are; everything else is legacy-only or dropped.
_SHARED = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "stream",
    "stream_options",
    "logit_bias",
)
LEGACY_DEFAULT_MAX_TOKENS = 16  # the legacy endpoint's documented default, kept so answers are as long as there


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(item, str) for item in prompt):
        raise UnsupportedParameter(
            "This model serves one prompt per request; send the prompts as separate requests.", param="prompt"
        )
    raise UnsupportedParameter("This model takes the prompt as text, not as token ids.", param="prompt")


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat request equivalent to a legacy completion request."""
    if body.get("echo"):
        raise UnsupportedParameter("`echo` is not available for this model.", param="echo")
    if body.get("suffix"):
        raise UnsupportedParameter("`suffix` is not available for this model.", param="suffix")
    if body.get("logprobs") is not None:
        raise UnsupportedParameter("`logprobs` is not available for this model.", param="logprobs")
    if (body.get("best_of") or 1) != 1:
        raise UnsupportedParameter("`best_of` is not available for this model.", param="best_of")
    chat = {name: body[name] for name in _SHARED if name in body}
    chat.setdefault("max_tokens", LEGACY_DEFAULT_MAX_TOKENS)
    chat["messages"] = [{"role": "user", "content": _prompt_text(body.get("prompt") or "")}]
    return chat


def _completion_id(chat_id: Any) -> str:
    text = str(chat_id or "")
    return "cmpl-" + text.removeprefix("chatcmpl-")


def _text_completion(chat: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """A text_completion body or chunk with `choices`, carrying over the chat one's ids and usage."""
    completion: dict[str, Any] = {
        "id": _completion_id(chat.get("id")),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": choices,
    }
    if chat.get("usage") is not None:
        completion["usage"] = chat["usage"]
    if chat.get("system_fingerprint"):
        completion["system_fingerprint"] = chat["system_fingerprint"]
    return completion


def completion_from_chat(payload: bytes) -> bytes:
    """A chat.completion body as a text_completion body; ValueError for a body that is no chat completion.

    An `exact_shapes` provider's answer reaches here unchecked, so its shape is not taken on trust.
    """
    chat = orjson.loads(payload)
    listed = chat.get("choices") if isinstance(chat, dict) else False
    if not isinstance(listed, list | None) or not all(
        isinstance(choice, dict) and isinstance(choice.get("message") or {}, dict) for choice in listed or []
    ):
        raise ValueError("not a chat completion")
    choices = [
        {
            "text": (choice.get("message") or {}).get("content") or "",
            "index": choice.get("index", index),
            "logprobs": None,
            "finish_reason": choice.get("finish_reason"),
        }
        for index, choice in enumerate(listed or [])
    ]
    return orjson.dumps(_text_completion(chat, choices))


class CompletionStream:
    """Wraps a chat stream translator; its chunks come out as text_completion chunks."""

    def __init__(self, chat: StreamTranslator) -> None:
        self.chat = chat

    @property
    def done(self) -> bool:
        return self.chat.done

    @property
    def failed(self) -> bool:
        return self.chat.failed

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.chat.usage

    def feed(self, event: bytes) -> Iterable[bytes]:
        out = []
        for payload in self.chat.feed(event):
            chunk = orjson.loads(payload)
            if "error" in chunk:
                out.append(payload)
                continue
            choices = []
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if not delta.get("content") and choice.get("finish_reason") is None:
                    continue  # a role-only (or tool-call) delta has no text to carry
                choices.append(
                    {
                        "text": delta.get("content") or "",
                        "index": choice.get("index", 0),
                        "logprobs": None,
                        "finish_reason": choice.get("finish_reason"),
                    }
                )
            if not choices and chunk.get("usage") is None:
                continue
            out.append(orjson.dumps(_text_completion(chunk, choices)))
        return out
