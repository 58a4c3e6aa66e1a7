"""Streams Portico cannot give are refused, not answered whole; a streamed chat names its upstream's id.

Images and transcriptions stream on the openai kind (tests/integration/test_streamed_images_and_transcripts.py);
Azure, the other kind that serves them, refuses `stream: true` with OpenAI's 400.
"""

from __future__ import annotations

import random
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.openai_upstream import FakeUpstream, Reply
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]


@pytest.fixture
def image_route(upstream_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = make_route(
        provider=upstream_provider,
        public_id=f"image-{tag}",
        upstream_model=f"fake-image-{tag}",
        supports_chat=False,
        supports_images=True,
    )
    settle()
    return route


@pytest.fixture
def azure_image_route(azure_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = make_route(
        provider=azure_provider,
        public_id=f"azure-image-{tag}",
        upstream_model=f"image-deploy-{tag}",
        supports_chat=False,
        supports_images=True,
    )
    settle()
    return route


@pytest.fixture
def whisper_route(
    azure_upstream: FakeAzure, azure_provider: Provider, tag: str, key: IssuedKey, settle: Settle
) -> ModelRoute:
    route = make_route(
        provider=azure_provider,
        public_id=f"whisper-{tag}",
        upstream_model=f"whisper-fake-{tag}",
        supports_chat=False,
        supports_transcription=True,
    )
    azure_upstream.script(route.upstream_model, Reply("a transcript"))
    settle()
    return route


def _refusal(caught: pytest.ExceptionInfo[openai.BadRequestError]) -> tuple[int, str, str | None, str]:
    error = caught.value
    body = error.body
    assert isinstance(body, dict)
    return error.status_code, body["type"], error.param, body["message"]


def test_a_streamed_image_request_is_refused_and_never_reaches_the_upstream(
    client: OpenAI, azure_upstream: FakeAzure, azure_image_route: ModelRoute
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=azure_image_route.public_id, prompt="An otter", stream=True)

    status, kind, param, message = _refusal(caught)
    assert (status, kind, param) == (400, "invalid_request_error", "stream")
    assert message == "This endpoint does not stream; leave 'stream' out."
    assert azure_upstream.received(azure_image_route.upstream_model) == []


def test_an_image_request_that_does_not_stream_is_still_served(
    client: OpenAI, upstream: FakeUpstream, image_route: ModelRoute
) -> None:
    images = client.images.generate(model=image_route.public_id, prompt="An otter", stream=False)

    assert images.data
    assert len(upstream.received(image_route.upstream_model)) == 1


def test_a_streamed_transcription_is_refused_and_never_reaches_the_upstream(
    client: OpenAI, azure_upstream: FakeAzure, whisper_route: ModelRoute, tmp_path: Path
) -> None:
    audio = tmp_path / "speech.mp3"
    audio.write_bytes(random.Random(7).randbytes(4000))

    with audio.open("rb") as file, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model=whisper_route.public_id, file=file, stream=True)

    status, kind, param, message = _refusal(caught)
    assert (status, kind, param) == (400, "invalid_request_error", "stream")
    assert message == "This endpoint does not stream; leave 'stream' out."
    assert azure_upstream.received(whisper_route.upstream_model) == []
    with audio.open("rb") as file:
        assert client.audio.transcriptions.create(model=whisper_route.public_id, file=file).text == "a transcript"


def test_a_streamed_anthropic_answer_names_the_upstreams_id(
    client: OpenAI, anthropic_route: ModelRoute, anthropic_upstream: FakeAnthropic, settle: Settle
) -> None:
    settle()
    anthropic_upstream.script(anthropic_route.upstream_model, AnthropicReply("Paris it is"))
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where?"}]

    with client.chat.completions.with_streaming_response.create(
        model=anthropic_route.public_id, messages=messages, stream=True
    ) as response:
        chunks = [chunk for chunk in response.parse() if isinstance(chunk, ChatCompletionChunk) and chunk.choices]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)

    assert text == "Paris it is"
    assert response.headers["x-portico-upstream-id"] == "msg_01FakeAnthropicReply"
    whole = client.chat.completions.with_raw_response.create(model=anthropic_route.public_id, messages=messages)
    assert whole.headers["x-portico-upstream-id"] == response.headers["x-portico-upstream-id"]
