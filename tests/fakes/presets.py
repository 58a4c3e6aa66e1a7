"""Settings for OpenAI-compatible servers (docs/provider-kinds.md), and the quirks the fake OpenAI plays for each.

Each preset is what an `openai`-kind provider row should say for that server: its base URL
and the compatibility flags. A flag is left on only where the server is known to take the
field; off is always safe (Portico renames `max_completion_tokens`, counts stream usage itself,
and bridges legacy completions onto chat). The fake refuses exactly what a preset turns off,
so the test proves each setting keeps every request away from what the server lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.behaviours import Quirks, Reply


@dataclass(frozen=True)
class Preset:
    server: str
    base_url: str  # the pattern an operator fills in
    accepts_stream_options: bool
    accepts_max_completion_tokens: bool
    serves_completions: bool
    exact_shapes: bool = False

    def flags(self) -> dict[str, bool]:
        return {
            "accepts_stream_options": self.accepts_stream_options,
            "accepts_max_completion_tokens": self.accepts_max_completion_tokens,
            "serves_completions": self.serves_completions,
            "exact_shapes": self.exact_shapes,
        }

    def quirks(self, reply: Reply) -> Quirks:
        refuses = {
            name
            for name, accepted in (
                ("stream_options", self.accepts_stream_options),
                ("max_completion_tokens", self.accepts_max_completion_tokens),
            )
            if not accepted
        }
        return Quirks(reply, refuses=frozenset(refuses), serves_completions=self.serves_completions)


PRESETS: tuple[Preset, ...] = (
    Preset("vLLM", "http://HOST:8000/v1", True, True, True),
    Preset("Groq", "https://api.groq.com/openai/v1", False, True, False),
    Preset("Together", "https://api.together.xyz/v1", False, False, True),
    Preset("Fireworks", "https://api.fireworks.ai/inference/v1", False, False, True),
    Preset("LM Studio", "http://HOST:1234/v1", False, False, True),
    Preset("LocalAI", "http://HOST:8080/v1", False, False, True),
    Preset("Text Generation WebUI", "http://HOST:5000/v1", False, False, True),
    Preset("Hugging Face TGI", "http://HOST:8080/v1", False, False, False),
)
