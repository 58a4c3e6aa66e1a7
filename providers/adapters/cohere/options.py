"""The `cohere` kind's own settings (`Provider.options`)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from providers.adapters.kind_options import InvalidOptions, OptionField, clean_options

# What Cohere's Embed API is told the texts are for; OpenAI's embeddings request has no such field.
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")

OPTIONS = MappingProxyType(
    {
        "embed_input_type": OptionField(
            str,
            "search_document",
            "What embedded texts are for, as Cohere's Embed API asks: " + ", ".join(INPUT_TYPES) + ".",
        ),
    }
)


def clean_cohere_options(options: Any, *, label: str) -> dict[str, Any]:
    """The options as stored: known keys of their types, and an input type Cohere knows."""
    cleaned = clean_options(OPTIONS, options, label=label)
    input_type = cleaned.get("embed_input_type")
    if input_type is not None and input_type not in INPUT_TYPES:
        raise InvalidOptions(f"Option 'embed_input_type' must be one of {', '.join(INPUT_TYPES)}, not {input_type!r}.")
    return cleaned
