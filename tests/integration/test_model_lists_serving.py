"""Models made from a list are served: the official SDK, through a running Portico, reaches each model at its handle.

The fake gateway serves the list and, at the listed handles, an OpenAI-compatible
and an Anthropic upstream. A call that arrives at the handle's path proves the
provider's base URL was derived right for the adapter that calls it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from providers.model_lists.services import model_list_source_create, model_list_source_refresh
from providers.models import DeploymentProbe, DiscoveredModel, ModelListSource
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.behaviours import Reply
from tests.fakes.model_list_server import FakeModelList
from tests.servers import Settle

pytestmark = [pytest.mark.integration]

CORPORATE_KEY = "sk-corp-gateway-0123456789abcdef"


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeModelList]:
    fake = FakeModelList(anthropic_key=CORPORATE_KEY, list_credential=CORPORATE_KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def list_rows(committed_db: None) -> Iterator[None]:
    """Deletes this test's model-list rows before `committed_db` deletes the models and providers they name."""
    yield
    ModelListSource.objects.all().delete()
    DeploymentProbe.objects.all().delete()
    DiscoveredModel.objects.all().delete()


@pytest.mark.usefixtures("list_rows")
def test_the_sdk_reaches_an_openai_and_an_anthropic_model_made_from_the_list(
    gateway: FakeModelList, client: OpenAI, settle: Settle, tag: str
) -> None:
    gpt, claude = f"gpt-listed-{tag}", f"claude-listed-{tag}"
    gateway.serve(
        [
            {"model_version": gpt, "handle": "/openai/v1/chat/completions", "prompt_price_1k": 0.001,
             "completion_price_1k": 0.002},
            {"model_version": claude, "model_family": "claude-3", "handle": "/anthropic/v1/messages",
             "prompt_price_1k": 0.003, "completion_price_1k": 0.015},
        ]
    )  # fmt: skip
    gateway.openai.script(gpt, Reply("served at the OpenAI handle"))
    gateway.anthropic.script(claude, AnthropicReply("served at the Anthropic handle"))
    source = model_list_source_create(name=f"corp-{tag}", url=gateway.list_url, credential=CORPORATE_KEY)
    refresh = model_list_source_refresh(source=source)
    assert refresh is not None
    assert refresh.diff["added"] == [gpt, claude]
    settle()

    openai_answer = client.chat.completions.create(model=gpt, messages=[{"role": "user", "content": "Hi"}])
    anthropic_answer = client.chat.completions.create(model=claude, messages=[{"role": "user", "content": "Hi"}])

    assert openai_answer.choices[0].message.content == "served at the OpenAI handle"
    assert openai_answer.model == gpt
    assert anthropic_answer.choices[0].message.content == "served at the Anthropic handle"
    assert anthropic_answer.model == claude
    [openai_call] = gateway.openai.received(gpt)
    assert openai_call.path == "/openai/v1/chat/completions"
    assert openai_call.headers["authorization"] == f"Bearer {CORPORATE_KEY}"
    [anthropic_call] = [call for call in gateway.anthropic.received() if call.body.get("model") == claude]
    assert anthropic_call.path == "/anthropic/v1/messages"
    assert anthropic_call.headers["x-api-key"] == CORPORATE_KEY
