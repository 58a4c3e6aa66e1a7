"""Fixtures of the end-to-end tests against upstreams that do not speak OpenAI's protocol (or not quite).

Like the OpenAI fake of `tests/conftest.py`, each fake server starts once per
session, and each test gets providers and routes of its own (named with `tag`)
pointed at it; a test settles once it has made its rows. The Anthropic and Azure
fakes check the provider's key, so their credentials are fixed for the session.

`personas(route, ...)` gives the three keys of every tenant-facing test: the
owner and a teammate, of a tenant limited to those routes, and an outsider, of
a tenant limited to a route of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_provider, make_route
from tenants.tests.factories import IssuedKey, make_key, make_tenant
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.replicate_upstream import FakeReplicate
from tests.servers import PorticoServer

ANTHROPIC_CREDENTIAL = "sk-ant-api03-fake-e2e-credential-0123456789"
AZURE_CREDENTIAL = "0123456789abcdef0123456789abcdef"  # Azure keys are 32 hex digits
AZURE_API_VERSION = "2024-06-01"
# The servers' PORTICO_MAX_UPLOAD_BYTES default is 26 MB; this one refuses uploads past 256 KiB.
SMALL_UPLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Personas:
    owner: IssuedKey
    teammate: IssuedKey
    outsider: IssuedKey


# --- fake upstreams, one of each per session ---


@pytest.fixture(scope="session")
def anthropic_credential() -> str:
    return ANTHROPIC_CREDENTIAL


@pytest.fixture(scope="session")
def anthropic_upstream(anthropic_credential: str) -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=anthropic_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def ollama_upstream() -> Iterator[FakeOllama]:
    fake = FakeOllama()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def azure_credential() -> str:
    return AZURE_CREDENTIAL


@pytest.fixture(scope="session")
def azure_upstream(azure_credential: str) -> Iterator[FakeAzure]:
    fake = FakeAzure(api_key=azure_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def small_upload_portico(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PorticoServer]:
    """A Portico whose upload limit is small, so refusing an upload over it needs no large file."""
    env = {**server_env, "PORTICO_MAX_UPLOAD_BYTES": str(SMALL_UPLOAD_BYTES)}
    server = PorticoServer(env=env, log_path=tmp_path_factory.mktemp("portico-small-upload") / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- providers and routes of each test ---


@pytest.fixture
def anthropic_provider(
    committed_db: None, anthropic_upstream: FakeAnthropic, anthropic_credential: str, tag: str
) -> Provider:
    return make_provider(
        kind="anthropic", name=f"anthropic-{tag}", base_url=anthropic_upstream.base_url, credential=anthropic_credential
    )


@pytest.fixture
def anthropic_route(anthropic_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=anthropic_provider, public_id=f"claude-e2e-{tag}", upstream_model=f"claude-fake-{tag}")


@pytest.fixture
def ollama_provider(committed_db: None, ollama_upstream: FakeOllama, tag: str) -> Provider:
    return make_provider(kind="ollama", name=f"ollama-{tag}", base_url=ollama_upstream.base_url)


@pytest.fixture
def ollama_route(ollama_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=ollama_provider, public_id=f"llama-e2e-{tag}", upstream_model=f"llama-fake-{tag}")


@pytest.fixture
def ollama_embedding_route(ollama_provider: Provider, tag: str) -> ModelRoute:
    return make_route(
        provider=ollama_provider,
        public_id=f"nomic-e2e-{tag}",
        upstream_model=f"nomic-fake-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )


@pytest.fixture
def azure_provider(committed_db: None, azure_upstream: FakeAzure, azure_credential: str, tag: str) -> Provider:
    return make_provider(
        kind="azure",
        name=f"azure-{tag}",
        base_url=azure_upstream.base_url,
        credential=azure_credential,
        api_version=AZURE_API_VERSION,
    )


@pytest.fixture
def azure_route(azure_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=azure_provider, public_id=f"gpt-azure-{tag}", upstream_model=f"gpt-4o-deploy-{tag}")


@pytest.fixture
def azure_embedding_route(azure_provider: Provider, tag: str) -> ModelRoute:
    return make_route(
        provider=azure_provider,
        public_id=f"embed-azure-{tag}",
        upstream_model=f"embed-deploy-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )


@pytest.fixture
def upstream_embedding_route(upstream_provider: Provider, tag: str) -> ModelRoute:
    return make_route(
        provider=upstream_provider,
        public_id=f"embed-e2e-{tag}",
        upstream_model=f"embed-fake-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )


# --- who calls ---


@pytest.fixture
def personas(mock_provider: Provider, tag: str) -> Callable[..., Personas]:
    def personas(*routes: ModelRoute) -> Personas:
        tenant = make_tenant(slug=f"acme-{tag}", allowed_model_ids=[route.pk for route in routes])
        elsewhere = make_route(provider=mock_provider, public_id=f"elsewhere-{tag}")
        other = make_tenant(slug=f"globex-{tag}", allowed_model_ids=[elsewhere.pk])
        return Personas(
            owner=make_key(tenant=tenant, name="owner"),
            teammate=make_key(tenant=tenant, name="teammate"),
            outsider=make_key(tenant=other, name="outsider"),
        )

    return personas


# --- the `cohere` kind: Cohere's API v2 ---

COHERE_CREDENTIAL = "co-fake-e2e-credential-5b1d9e0c7a24"


@pytest.fixture(scope="session")
def cohere_credential() -> str:
    return COHERE_CREDENTIAL


@pytest.fixture(scope="session")
def cohere_upstream(cohere_credential: str) -> Iterator[FakeCohere]:
    fake = FakeCohere(api_key=cohere_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def cohere_provider(committed_db: None, cohere_upstream: FakeCohere, cohere_credential: str, tag: str) -> Provider:
    return make_provider(
        kind="cohere", name=f"cohere-{tag}", base_url=cohere_upstream.base_url, credential=cohere_credential
    )


@pytest.fixture
def cohere_route(cohere_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=cohere_provider, public_id=f"command-e2e-{tag}", upstream_model=f"command-fake-{tag}")


@pytest.fixture
def cohere_embedding_route(cohere_provider: Provider, tag: str) -> ModelRoute:
    return make_route(
        provider=cohere_provider,
        public_id=f"embed-cohere-{tag}",
        upstream_model=f"embed-fake-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )


# --- the `gemini` kind: Google's Gemini API ---

GEMINI_CREDENTIAL = "AIzaSyFakeE2eGeminiCredential0123456789"


@pytest.fixture(scope="session")
def gemini_credential() -> str:
    return GEMINI_CREDENTIAL


@pytest.fixture(scope="session")
def gemini_upstream(gemini_credential: str) -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=gemini_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def gemini_provider(committed_db: None, gemini_upstream: FakeGemini, gemini_credential: str, tag: str) -> Provider:
    return make_provider(
        kind="gemini", name=f"gemini-{tag}", base_url=gemini_upstream.base_url, credential=gemini_credential
    )


@pytest.fixture
def gemini_route(gemini_provider: Provider, tag: str) -> ModelRoute:
    return make_route(provider=gemini_provider, public_id=f"gemini-e2e-{tag}", upstream_model=f"gemini-fake-{tag}")


@pytest.fixture
def gemini_embedding_route(gemini_provider: Provider, tag: str) -> ModelRoute:
    return make_route(
        provider=gemini_provider,
        public_id=f"embed-gemini-{tag}",
        upstream_model=f"gemini-embedding-fake-{tag}",
        supports_chat=False,
        supports_embeddings=True,
    )


# --- replicate ---

REPLICATE_CREDENTIAL = "r8_FakeE2eReplicateToken0123456789abcdef"


@pytest.fixture(scope="session")
def replicate_credential() -> str:
    return REPLICATE_CREDENTIAL


@pytest.fixture(scope="session")
def replicate_upstream(replicate_credential: str) -> Iterator[FakeReplicate]:
    fake = FakeReplicate(api_key=replicate_credential)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def replicate_provider(
    committed_db: None, replicate_upstream: FakeReplicate, replicate_credential: str, tag: str
) -> Provider:
    return make_provider(
        kind="replicate", name=f"replicate-{tag}", base_url=replicate_upstream.base_url, credential=replicate_credential
    )


@pytest.fixture
def replicate_route(replicate_provider: Provider, tag: str) -> ModelRoute:
    # Prompt in, text out: no tools, images or JSON mode to promise.
    return make_route(
        provider=replicate_provider,
        public_id=f"llama-replicate-{tag}",
        upstream_model=f"meta/llama-fake-{tag}",
        supports_tools=False,
        supports_vision=False,
        supports_json_mode=False,
    )
