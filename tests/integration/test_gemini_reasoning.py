"""OpenAI's `reasoning_effort` through a `gemini`-kind provider: Gemini is sent a thinking budget."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from providers.models import ModelRoute
from tenants.tests.factories import IssuedKey
from tests.fakes.gemini_upstream import FakeGemini
from tests.servers import Settle

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("committed_db")]

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Is 1,000,003 prime?"}]


@pytest.fixture
def route(gemini_route: ModelRoute, key: IssuedKey, settle: Settle) -> ModelRoute:
    settle()
    return gemini_route


def test_a_high_effort_reaches_gemini_as_googles_budget_whole_and_streamed(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute
) -> None:
    whole = client.chat.completions.create(model=route.public_id, messages=ASK, reasoning_effort="high")
    with client.chat.completions.create(
        model=route.public_id, messages=ASK, reasoning_effort="high", max_completion_tokens=32768, stream=True
    ) as stream:
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert whole.choices[0].message.content
    assert streamed == whole.choices[0].message.content
    configs: list[dict[str, Any]] = [r.body["generationConfig"] for r in gemini_upstream.received(route.upstream_model)]
    assert configs == [
        {"thinkingConfig": {"thinkingBudget": 24576}},
        {"thinkingConfig": {"thinkingBudget": 24576}, "maxOutputTokens": 32768},
    ]


def test_an_effort_gemini_has_no_budget_for_is_refused_before_gemini_is_called(
    client: OpenAI, gemini_upstream: FakeGemini, route: ModelRoute
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=route.public_id, messages=ASK, extra_body={"reasoning_effort": "extreme"})

    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "reasoning_effort"
    assert "'high'" in caught.value.message
    assert gemini_upstream.received(route.upstream_model) == []
