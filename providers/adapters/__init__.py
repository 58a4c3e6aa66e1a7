"""The registry of provider kinds. A new kind is one adapter module and one line here."""

from __future__ import annotations

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.azure import AzureOpenAIAdapter
from providers.adapters.base import Adapter
from providers.adapters.cohere import CohereAdapter
from providers.adapters.gemini import GeminiAdapter
from providers.adapters.mock import MockAdapter
from providers.adapters.ollama import OllamaAdapter
from providers.adapters.openai import OpenAIAdapter
from providers.adapters.replicate import ReplicateAdapter

ADAPTERS: dict[str, Adapter] = {
    adapter.kind: adapter
    for adapter in (
        OpenAIAdapter(),
        AnthropicAdapter(),
        AzureOpenAIAdapter(),
        OllamaAdapter(),
        CohereAdapter(),
        GeminiAdapter(),
        ReplicateAdapter(),
        MockAdapter(),
    )
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]


def needs_base_url(kind: str) -> bool:
    """Kinds whose adapter has an address of its own (the mock's, a public API's) need none from the operator."""
    return not ADAPTERS[kind].default_base_url


def kind_choices() -> list[tuple[str, str]]:
    return [(kind, adapter.label) for kind, adapter in ADAPTERS.items()]
