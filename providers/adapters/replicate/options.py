"""The replicate kind's own settings (`Provider.options`): how a conversation becomes a model's inputs.

Replicate's language models take flat inputs rather than a message list, and not all of them
name those inputs alike (`max_tokens` on the Llama 3 family, `max_new_tokens` on older ones),
so the names and the prompt template are settings of the provider row, checked here beyond
their types: a template must place the turn's content, and an input name must be one a model
could declare.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from providers.adapters.kind_options import InvalidOptions, OptionField

# Placeholders a turn template may use: the speaker ("User", "Assistant", "System") and what they said.
TEMPLATE_FIELDS = frozenset({"role", "content"})
DEFAULT_TURN_TEMPLATE = "{role}: {content}"
# Replicate holds a sync request open for at most this many seconds.
MAX_SYNC_WAIT = 60
# An input name as Cog models declare them: a Python identifier.
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Inputs the conversation and the sampling fields go in; an empty name for an optional one leaves it unsent.
INPUT_OPTIONS: Mapping[str, OptionField] = {
    "prompt_input": OptionField(str, "prompt", "The input the rendered conversation goes in."),
    "system_prompt_input": OptionField(
        str,
        "system_prompt",
        "The input system and developer messages go in; empty to render them into the prompt as System turns.",
    ),
    "max_tokens_input": OptionField(
        str, "max_tokens", "The input the output cap goes in (`max_new_tokens` for older models); empty: not sent."
    ),
    "temperature_input": OptionField(str, "temperature", "The input `temperature` goes in; empty: not sent."),
    "top_p_input": OptionField(str, "top_p", "The input `top_p` goes in; empty: not sent."),
    "stop_input": OptionField(
        str, "stop_sequences", "The input the stop sequences go in, comma-joined; empty: not sent."
    ),
}

OPTIONS: Mapping[str, OptionField] = MappingProxyType(
    {
        **INPUT_OPTIONS,
        "turn_template": OptionField(
            str,
            DEFAULT_TURN_TEMPLATE,
            "How one turn of a conversation is written in the prompt: `{role}` (User, Assistant or System) "
            "and `{content}`; a literal brace is doubled.",
        ),
        "turn_separator": OptionField(str, "\n\n", "What goes between two turns of the prompt."),
        "plain_single_turn": OptionField(
            bool,
            True,
            "A conversation of one user message goes as its bare text, for models that apply their own chat "
            "template to the prompt.",
        ),
        "sync_wait": OptionField(
            int,
            MAX_SYNC_WAIT,
            "Seconds Replicate may hold a whole-answer request open (`Prefer: wait`, 1 to 60); a prediction "
            "still running then is polled. Never more than the provider's read timeout allows.",
        ),
    }
)


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse stored options whose values cannot work (their types are already checked)."""
    for key in INPUT_OPTIONS:
        name = options.get(key)
        if name is None or (name == "" and key != "prompt_input"):
            continue
        if not _INPUT_NAME.fullmatch(name):
            raise InvalidOptions(f"Option {key!r} must name a model input (letters, digits, underscores): {name!r}.")
    names = [options.get(key, spec.default) for key, spec in INPUT_OPTIONS.items()]
    named = [name for name in names if name]
    if len(set(named)) != len(named):
        raise InvalidOptions("Each input option must name a different input.")
    if "turn_template" in options:
        check_template(options["turn_template"])
    wait = options.get("sync_wait")
    if wait is not None and not 1 <= wait <= MAX_SYNC_WAIT:
        raise InvalidOptions(f"Option 'sync_wait' must be from 1 to {MAX_SYNC_WAIT} seconds, not {wait}.")


def check_template(template: str) -> None:
    try:
        fields = [field for _text, field, _spec, _conversion in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise InvalidOptions(f"Option 'turn_template' is not a valid template: {exc}.") from None
    unknown = sorted(set(fields) - TEMPLATE_FIELDS)
    if unknown:
        raise InvalidOptions(
            f"Option 'turn_template' may only use {{role}} and {{content}}, not {', '.join(map(repr, unknown))}."
        )
    if "content" not in fields:
        raise InvalidOptions("Option 'turn_template' must place the turn's {content}.")
