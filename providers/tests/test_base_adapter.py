"""What a kind inherits from BaseAdapter, and the stream framing each kind picks."""

from __future__ import annotations

import orjson
import pytest

from providers.adapters import ADAPTERS, adapter_for
from providers.adapters.base import Adapter, BaseAdapter, Target, UnsupportedOperation
from providers.adapters.framing import EventSplitter, LineSplitter
from providers.adapters.replicate.stream import NamedEventSplitter
from providers.tests.factories import make_provider_info


class ChatOnly(BaseAdapter):
    kind = "chat-only"
    label = "Chat only"


ADAPTER = ChatOnly()
TARGET = Target(make_provider_info(), "upstream", "public")


def test_a_bare_kind_refuses_uploads_and_streams_by_name() -> None:
    with pytest.raises(UnsupportedOperation, match="Chat only takes no uploads"):
        ADAPTER.upload_request("transcriptions", TARGET, _nothing(), "multipart/form-data")
    with pytest.raises(UnsupportedOperation, match="Chat only does not stream chat"):
        ADAPTER.stream_translator("chat", TARGET, include_usage=False)


def test_a_bare_kind_maps_failures_as_openai_does_and_uses_the_network() -> None:
    failure = ADAPTER.failure(429, orjson.dumps({"error": {"message": "slow down"}}), {"retry-after": "2"})

    assert (failure.status, failure.type, failure.code) == (429, "requests", "rate_limit_exceeded")
    assert failure.headers == {"retry-after": "2"}
    assert ADAPTER.transport() is None
    assert ADAPTER.default_base_url == ""
    assert ADAPTER.clean_options({}) == {}


SPLITTERS: dict[str, type] = {
    "openai": EventSplitter,
    "azure": EventSplitter,
    "anthropic": EventSplitter,
    "ollama": LineSplitter,
    "mock": EventSplitter,
    "cohere": EventSplitter,
    "gemini": EventSplitter,
    "replicate": NamedEventSplitter,
}


@pytest.mark.parametrize(("kind", "splitter"), SPLITTERS.items())
def test_each_kind_splits_its_streams_in_its_own_framing(kind: str, splitter: type) -> None:
    first, second = adapter_for(kind).splitter(), adapter_for(kind).splitter()

    assert type(first) is splitter
    assert first is not second  # one per stream: a splitter holds the bytes of an unfinished event


def test_the_framing_of_every_registered_kind_is_tested() -> None:
    # A new kind fails here until its framing is added above.
    assert set(SPLITTERS) == set(ADAPTERS)


def test_every_registered_kind_is_an_adapter_with_its_own_label() -> None:
    adapters: list[Adapter] = list(ADAPTERS.values())

    assert all(isinstance(adapter, BaseAdapter) for adapter in adapters)
    assert len({adapter.label for adapter in adapters}) == len(adapters)


def test_an_sse_event_cut_off_at_the_end_is_not_relayed_but_an_unterminated_line_is() -> None:
    sse, ndjson = EventSplitter(), LineSplitter()
    sse.feed(b'data: {"a": 1}')
    ndjson.feed(b'{"a": 1}')

    assert (sse.flush(), ndjson.flush()) == ([], [b'{"a": 1}'])


async def _nothing():  # type: ignore[no-untyped-def]
    yield b""
