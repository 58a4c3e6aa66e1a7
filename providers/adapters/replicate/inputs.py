"""An OpenAI chat request, as the `input` of a Replicate language-model prediction.

Replicate's language models take one prompt string, not a message list. The conversation is
written into it as a plain transcript, one turn per message through the provider's
`turn_template` (by default `User: …` / `Assistant: …`), turns joined by `turn_separator`,
and the transcript ends with an empty assistant turn (`Assistant:`) as the cue for the reply.
A last assistant message is not closed that way: the model carries on from its text.

System and developer messages go in the model's `system_prompt` input; a provider that names
none writes them into the transcript as System turns. A conversation of one user message goes
as its bare text (unless `plain_single_turn` is off), since most of these models wrap the prompt
in their own chat template. Sampling fields go under the input names the options give.

Tool calls, images, files, several choices, log probabilities and JSON mode have no equivalent in
these inputs; they are refused with `UnsupportedParameter`, a 400, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.adapters.base import UnsupportedParameter

_SPEAKERS = {"user": "User", "assistant": "Assistant", "system": "System", "developer": "System"}
# Fields that ask for what a prompt-in, text-out model cannot give; each is refused when set.
_REFUSED = {
    "tools": "This model does not support tools.",
    "functions": "This model does not support tools.",
    "logprobs": "This model does not return log probabilities.",
    "top_logprobs": "This model does not return log probabilities.",
    "audio": "This model does not produce audio output.",
}


def prediction_input(body: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The prediction's `input` for an OpenAI chat body (already validated by the gateway)."""
    _refuse_unsupported(body)
    system, turns = _conversation(body.get("messages") or [])
    own_system = bool(options["system_prompt_input"])
    if system and not own_system:
        turns.insert(0, ("System", "\n\n".join(system)))
    values: dict[str, Any] = {options["prompt_input"]: render(turns, options)}
    if system and own_system:
        values[options["system_prompt_input"]] = "\n\n".join(system)
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    sampling = {
        "max_tokens_input": cap,
        "temperature_input": body.get("temperature"),
        "top_p_input": body.get("top_p"),
        "stop_input": ",".join([stop] if isinstance(stop, str) else stop) if stop else None,
    }
    for option, value in sampling.items():
        if value is not None and options[option]:
            values[options[option]] = value
    return values


def render(turns: list[tuple[str, str]], options: Mapping[str, Any]) -> str:
    """The transcript, ending with the cue for the model's reply (or the reply it is to carry on)."""
    if options["plain_single_turn"] and len(turns) == 1 and turns[0][0] == "User":
        return turns[0][1]
    template: str = options["turn_template"]
    written = [template.format(role=role, content=content) for role, content in turns]
    if not turns or turns[-1][0] != "Assistant":
        written.append(template.format(role="Assistant", content="").rstrip())
    return str(options["turn_separator"]).join(written)


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name, message in _REFUSED.items():
        if body.get(name):
            raise UnsupportedParameter(message, name)
    if body.get("tool_choice") not in (None, "none"):
        raise UnsupportedParameter(_REFUSED["tools"], "tool_choice")
    if body.get("n") not in (None, 1):
        raise UnsupportedParameter("This model gives one choice per request: 'n' must be 1.", "n")
    if "audio" in (body.get("modalities") or ()):
        raise UnsupportedParameter(_REFUSED["audio"], "modalities")
    if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        raise UnsupportedParameter("This model does not support JSON mode (response_format).", "response_format")


def _conversation(messages: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The system texts, and the other turns as (speaker, text)."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        speaker = _SPEAKERS.get(str(role))
        if speaker is None:
            message_text = f"Messages of role '{role}' are not supported by this model."
            raise UnsupportedParameter(message_text, f"messages[{index}].role")
        if message.get("tool_calls"):
            raise UnsupportedParameter(_REFUSED["tools"], f"messages[{index}].tool_calls")
        text = _text(message.get("content"), f"messages[{index}].content")
        if speaker == "System":
            if text:
                system.append(text)
        else:
            turns.append((speaker, text))
    return system, turns


def _text(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            texts.append(part.get(kind) or "")
        elif kind == "image_url":
            raise UnsupportedParameter("This model does not support image inputs.", f"{param}[{index}].image_url")
        else:
            refused = f"Content parts of type '{kind}' are not supported by this model."
            raise UnsupportedParameter(refused, f"{param}[{index}].type")
    return "\n".join(texts)
