"""The built-in mock provider: answers in-process, deterministically, with no credentials.

It speaks OpenAI's wire format through an in-process httpx transport, so every
request to it takes exactly the path a real upstream request takes. It echoes
the last user message (at most 64 KiB of text per answer, shared by its `n`
choices, which OpenAI bounds to 128), streams it word by word, and reports
usage (one token per whitespace-separated word), which makes the quickstart demo and the
gateway's own tests independent of any outside service.
"""

from __future__ import annotations

import httpx

from providers.adapters.base import CHAT_STREAMED
from providers.adapters.kind_options import NO_OPTIONS
from providers.adapters.mock.answers import mock_handler
from providers.adapters.openai import OpenAIAdapter

# The mock needs no base URL: its transport answers in-process, so any name that never resolves will do.
MOCK_BASE_URL = "http://mock.portico.invalid/v1"


class MockAdapter(OpenAIAdapter):
    kind = "mock"
    label = "Mock (built-in, echoes the last user message)"
    default_base_url = MOCK_BASE_URL
    option_fields = NO_OPTIONS
    # Chat only: legacy completions reach it through the gateway's completions-to-chat bridge.
    operations = frozenset({"chat"})
    streamed = CHAT_STREAMED

    def transport(self) -> httpx.AsyncBaseTransport | None:
        return httpx.MockTransport(mock_handler)
