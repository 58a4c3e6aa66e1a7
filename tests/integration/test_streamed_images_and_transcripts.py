"""Streamed images and transcriptions: OpenAI's typed events, relayed where the provider kind streams them.

The openai kind streams both: the official SDK iterates `image_generation.*` and
`transcript.text.*` events as the loopback upstream sent them, and the ledger
records the call once, with the usage of its final event. A deployment that
fails before the first event is failed over as a chat stream's is. Azure, the
other kind that serves both endpoints, keeps OpenAI's 400 for `stream: true`.
"""

from __future__ import annotations

import base64
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

from providers.models import ModelRoute, Provider
from providers.tests.factories import make_route
from tenants.tests.factories import IssuedKey
from tests.conftest import Deploy
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.fleet import FakeFleet
from tests.fakes.openai_upstream import FAKE_PNG, Fail, FakeUpstream, Reply
from tests.integration.test_ledger import ledger_rows, new_request_id
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

TRANSCRIPT = "The stale smell of old beer lingers"
PROMPT = "An otter floating on water"  # five words: five input tokens at the fake upstream
AUDIO = bytes(range(256)) * 16
REFUSAL = "This endpoint does not stream; leave 'stream' out."


@pytest.fixture
def image_route(upstream_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> ModelRoute:
    route = make_route(
        provider=upstream_provider,
        public_id=f"image-{tag}",
        upstream_model=f"gpt-image-fake-{tag}",
        supports_chat=False,
        supports_images=True,
    )
    settle()
    return route


@pytest.fixture
def transcribe_route(
    upstream: FakeUpstream, upstream_provider: Provider, tag: str, key: IssuedKey, settle: Settle
) -> ModelRoute:
    route = make_route(
        provider=upstream_provider,
        public_id=f"transcribe-{tag}",
        upstream_model=f"gpt-4o-transcribe-fake-{tag}",
        supports_chat=False,
        supports_transcription=True,
    )
    upstream.script(route.upstream_model, Reply(TRANSCRIPT))
    settle()
    return route


@pytest.fixture
def azure_routes(azure_provider: Provider, tag: str, key: IssuedKey, settle: Settle) -> tuple[ModelRoute, ModelRoute]:
    image = make_route(
        provider=azure_provider,
        public_id=f"azure-image-{tag}",
        upstream_model=f"gpt-image-deploy-{tag}",
        supports_chat=False,
        supports_images=True,
    )
    transcribe = make_route(
        provider=azure_provider,
        public_id=f"azure-transcribe-{tag}",
        upstream_model=f"transcribe-deploy-{tag}",
        supports_chat=False,
        supports_transcription=True,
    )
    settle()
    return image, transcribe


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "speech.mp3"
    path.write_bytes(AUDIO)
    return path


def test_a_streamed_image_arrives_as_openais_events_and_is_recorded_once_with_its_usage(
    client: OpenAI, upstream: FakeUpstream, image_route: ModelRoute, key: IssuedKey
) -> None:
    request_id = new_request_id()

    stream = client.images.generate(
        model=image_route.public_id,
        prompt=PROMPT,
        stream=True,
        partial_images=1,
        extra_headers={"x-request-id": request_id},
    )
    events = list(stream)

    assert [type(event) for event in events] == [ImageGenPartialImageEvent, ImageGenCompletedEvent]
    partial, completed = events
    assert isinstance(partial, ImageGenPartialImageEvent)
    assert isinstance(completed, ImageGenCompletedEvent)
    assert partial.partial_image_index == 0
    assert base64.b64decode(partial.b64_json) == FAKE_PNG + bytes([0, 0])
    assert base64.b64decode(completed.b64_json) == FAKE_PNG + bytes([0])
    assert (completed.usage.input_tokens, completed.usage.output_tokens, completed.usage.total_tokens) == (5, 272, 277)
    [received] = upstream.received(image_route.upstream_model)
    assert (received.body["stream"], received.body["partial_images"]) == (True, 1)
    [row] = ledger_rows([request_id])
    assert (row.operation, row.model, row.api_key_id) == ("images", image_route.public_id, key.api_key.pk)
    assert (row.status, row.streamed, row.attempts) == (200, True, 1)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (5, 272, False)


def test_a_streamed_transcription_arrives_as_openais_events_and_is_recorded_once_with_its_usage(
    client: OpenAI, upstream: FakeUpstream, transcribe_route: ModelRoute, audio: Path
) -> None:
    request_id = new_request_id()

    with audio.open("rb") as file:
        stream = client.audio.transcriptions.create(
            model=transcribe_route.public_id, file=file, stream=True, extra_headers={"x-request-id": request_id}
        )
        events = list(stream)

    deltas = [event for event in events if isinstance(event, TranscriptionTextDeltaEvent)]
    assert [type(event) for event in events] == [TranscriptionTextDeltaEvent] * 7 + [TranscriptionTextDoneEvent]
    assert "".join(delta.delta for delta in deltas) == TRANSCRIPT
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert done.text == TRANSCRIPT
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (14, 7)
    [received] = upstream.received(transcribe_route.upstream_model)
    assert received.body["stream"] == "true"
    assert [file.size for file in received.files] == [len(AUDIO)]
    [row] = ledger_rows([request_id])
    assert (row.operation, row.status, row.streamed) == ("transcriptions", 200, True)
    assert (row.prompt_tokens, row.completion_tokens, row.tokens_estimated) == (14, 7, False)


def test_a_transcription_that_does_not_stream_is_still_answered_whole(
    client: OpenAI, transcribe_route: ModelRoute, audio: Path
) -> None:
    with audio.open("rb") as file:
        transcription = client.audio.transcriptions.create(model=transcribe_route.public_id, file=file)

    assert transcription.text == TRANSCRIPT


def test_a_streamed_image_fails_over_to_the_next_deployment_before_its_first_event(
    client: OpenAI, deploy: Deploy, upstreams: FakeFleet, tag: str, key: IssuedKey, settle: Settle
) -> None:
    upstream_model = f"gpt-image-fo-{tag}"
    upstreams[0].script(upstream_model, Fail(500, "upstream exploded", type="server_error"))
    public = f"image-fo-{tag}"
    deploy(public, upstream_model, urls=[upstreams[0].base_url, upstreams[1].base_url], supports_images=True)
    settle()
    request_id = new_request_id()

    with client.images.with_streaming_response.generate(
        model=public, prompt=PROMPT, stream=True, extra_headers={"x-request-id": request_id}
    ) as response:
        events = list(response.parse())

    assert [type(event) for event in events] == [ImageGenCompletedEvent]
    assert response.headers["x-portico-attempts"] == "2"
    assert response.headers["x-portico-provider"].startswith("fake-2-")
    assert len(upstreams[0].received(upstream_model)) == 1
    [row] = ledger_rows([request_id])
    assert (row.status, row.attempts, row.streamed) == (200, 2, True)
    assert (row.prompt_tokens, row.completion_tokens) == (5, 272)


def test_a_streamed_transcription_fails_over_to_the_next_deployment_before_its_first_event(
    client: OpenAI, deploy: Deploy, upstreams: FakeFleet, tag: str, key: IssuedKey, settle: Settle, audio: Path
) -> None:
    upstream_model = f"transcribe-fo-{tag}"
    upstreams[0].script(upstream_model, Fail(500, "upstream exploded", type="server_error"))
    public = f"transcribe-fo-{tag}"
    urls = [upstreams[0].base_url, upstreams[1].base_url]
    deploy(public, upstream_model, urls=urls, supports_chat=False, supports_transcription=True)
    settle()

    with (
        audio.open("rb") as file,
        client.audio.transcriptions.with_streaming_response.create(model=public, file=file, stream=True) as response,
    ):
        events = list(response.parse())

    assert [event.text for event in events if isinstance(event, TranscriptionTextDoneEvent)] == ["served by fake-2"]
    assert response.headers["x-portico-attempts"] == "2"
    [sent] = [file for received in upstreams[1].received(upstream_model) for file in received.files]
    assert sent.size == len(AUDIO)


def _refusal(caught: pytest.ExceptionInfo[openai.BadRequestError]) -> tuple[int, str | None, str]:
    body = caught.value.body
    assert isinstance(body, dict)
    return caught.value.status_code, caught.value.param, body["message"]


def test_a_kind_without_these_streams_still_refuses_them_with_openais_400(
    client: OpenAI, azure_routes: tuple[ModelRoute, ModelRoute], audio: Path
) -> None:
    image, transcribe = azure_routes

    with pytest.raises(openai.BadRequestError) as image_refused:
        client.images.generate(model=image.public_id, prompt=PROMPT, stream=True, partial_images=1)
    with audio.open("rb") as file, pytest.raises(openai.BadRequestError) as transcript_refused:
        client.audio.transcriptions.create(model=transcribe.public_id, file=file, stream=True)

    assert _refusal(image_refused) == (400, "stream", REFUSAL)
    assert _refusal(transcript_refused) == (400, "stream", REFUSAL)


def test_a_streamed_image_is_never_handed_to_a_fallback_whose_kind_cannot_stream_it(
    client: OpenAI,
    image_route: ModelRoute,
    azure_routes: tuple[ModelRoute, ModelRoute],
    upstream: FakeUpstream,
    azure_upstream: FakeAzure,
    settle: Settle,
) -> None:
    azure_image, _ = azure_routes
    model = image_route.model
    model.fallbacks = [azure_image.public_id]
    model.save()
    upstream.script(image_route.upstream_model, Fail(500, "upstream exploded", type="server_error"))
    settle()

    with pytest.raises(openai.InternalServerError):
        client.images.generate(model=image_route.public_id, prompt=PROMPT, stream=True)

    assert len(upstream.received(image_route.upstream_model)) == 1
    assert not [seen for seen in azure_upstream.received() if azure_image.upstream_model in seen.path]


def test_a_streamed_transcription_is_never_handed_to_a_fallback_whose_kind_cannot_stream_it(
    client: OpenAI,
    transcribe_route: ModelRoute,
    azure_routes: tuple[ModelRoute, ModelRoute],
    upstream: FakeUpstream,
    azure_upstream: FakeAzure,
    settle: Settle,
    audio: Path,
) -> None:
    _, azure_transcribe = azure_routes
    model = transcribe_route.model
    model.fallbacks = [azure_transcribe.public_id]
    model.save()
    upstream.script(transcribe_route.upstream_model, Fail(500, "upstream exploded", type="server_error"))
    settle()

    with audio.open("rb") as file, pytest.raises(openai.InternalServerError):
        client.audio.transcriptions.create(model=transcribe_route.public_id, file=file, stream=True)

    assert len(upstream.received(transcribe_route.upstream_model)) == 1
    assert not [seen for seen in azure_upstream.received() if azure_transcribe.upstream_model in seen.path]
