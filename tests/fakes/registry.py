"""Every provider kind's fake upstream, for the tests that run once per kind.

An entry names the integration fixtures that start the kind's fake and make a route
pointed at it, and how to script a plain text answer and an HTTP error on that fake
(each fake has its own behaviour classes). The mock has no fake: it answers in-process
by echoing the last user message, so it has no script and no error to raise.
A new kind adds its fake module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes import anthropic_upstream as anthropic
from tests.fakes import behaviours, cohere_upstream, ollama_upstream
from tests.fakes import gemini_upstream as gemini
from tests.fakes import replicate_upstream as replicate


@dataclass(frozen=True)
class KindFake:
    kind: str
    route_fixture: str  # a fixture giving a chat route of this kind (tests/conftest.py, tests/integration/conftest.py)
    upstream_fixture: str | None  # the fixture of its fake upstream; None for a kind that needs none
    reply: Callable[[str], Any] | None = None  # a scripted text answer with this content
    fail: Callable[[int], Any] | None = None  # a scripted error answer with this HTTP status
    embedding_route_fixture: str | None = None  # a fixture giving an embeddings route; None for a kind that cannot


KINDS: dict[str, KindFake] = {
    fake.kind: fake
    for fake in (
        KindFake("openai", "upstream_route", "upstream", behaviours.Reply, behaviours.Fail, "upstream_embedding_route"),
        KindFake("azure", "azure_route", "azure_upstream", behaviours.Reply, behaviours.Fail, "azure_embedding_route"),
        KindFake("anthropic", "anthropic_route", "anthropic_upstream", anthropic.Reply, anthropic.Fail),
        KindFake(
            "ollama",
            "ollama_route",
            "ollama_upstream",
            ollama_upstream.Reply,
            ollama_upstream.Fail,
            "ollama_embedding_route",
        ),
        KindFake(
            "cohere",
            "cohere_route",
            "cohere_upstream",
            cohere_upstream.Reply,
            cohere_upstream.Fail,
            "cohere_embedding_route",
        ),
        KindFake("gemini", "gemini_route", "gemini_upstream", gemini.Reply, gemini.Fail, "gemini_embedding_route"),
        KindFake("replicate", "replicate_route", "replicate_upstream", replicate.Reply, replicate.Fail),
        KindFake("mock", "echo_route", None),
    )
}
SCRIPTED = [kind for kind, fake in KINDS.items() if fake.upstream_fixture is not None]
EMBEDDING = [kind for kind, fake in KINDS.items() if fake.embedding_route_fixture is not None]
