"""The openai kind's own settings (`Provider.options`)."""

from __future__ import annotations

from collections.abc import Mapping

from providers.adapters.kind_options import OptionField

OPTIONS: Mapping[str, OptionField] = {
    "serves_responses": OptionField(
        bool,
        False,
        "The server has OpenAI's /v1/responses of its own: /v1/responses is passed through to it "
        "rather than bridged onto chat completions (docs/responses.md).",
    ),
}
