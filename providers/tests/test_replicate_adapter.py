"""The replicate adapter's requests and options: OpenAI chat bodies in, prediction creations out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters.base import Target, UnsupportedParameter
from providers.adapters.kind_options import InvalidOptions, with_defaults
from providers.adapters.replicate import ReplicateAdapter
from providers.adapters.replicate.inputs import prediction_input, render
from providers.adapters.replicate.options import OPTIONS
from providers.tests.factories import UPSTREAM_CREDENTIAL as CREDENTIAL
from providers.tests.factories import make_provider_info

PROVIDER = make_provider_info(
    kind="replicate", base_url="https://api.replicate.test", extra_headers={}, read_timeout=30.0
)
TARGET = Target(provider=PROVIDER, upstream_model="meta/meta-llama-3-8b-instruct", public_model="house-model")
ADAPTER = ReplicateAdapter()
DEFAULTS = with_defaults(OPTIONS, {})
HELLO = [{"role": "user", "content": "Hello"}]


def sent(body: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    return orjson.loads(ADAPTER.request("chat", target, body).content)  # type: ignore[arg-type]


def test_an_official_model_is_created_under_its_name_in_sync_mode_with_a_bearer_token() -> None:
    request = ADAPTER.request("chat", TARGET, {"model": "house-model", "messages": HELLO})

    assert (request.method, request.url) == (
        "POST",
        "https://api.replicate.test/v1/models/meta/meta-llama-3-8b-instruct/predictions",
    )
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert request.headers["prefer"] == "wait=29"  # a second inside the read timeout
    assert orjson.loads(request.content) == {"input": {"prompt": "Hello"}}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("read_timeout", "options", "wait"),
    [(30.0, {}, 29), (120.0, {}, 60), (120.0, {"sync_wait": 5}, 5), (1.0, {}, 1), (2.5, {"sync_wait": 60}, 1)],
)
def test_the_sync_wait_is_the_option_kept_inside_the_read_timeout(
    read_timeout: float, options: dict[str, Any], wait: int
) -> None:
    provider = make_provider_info(kind="replicate", read_timeout=read_timeout, options=options)
    target = Target(provider=provider, upstream_model="meta/llama", public_model="house-model")

    assert ADAPTER.request("chat", target, {"messages": HELLO}).headers["prefer"] == f"wait={wait}"


def test_a_version_is_created_at_predictions_with_its_version_and_a_v1_base_url_is_taken_as_the_root() -> None:
    provider = make_provider_info(kind="replicate", base_url="https://api.replicate.test/v1/")
    target = Target(provider=provider, upstream_model="replicate/llama-7b:ac808388e2e9", public_model="house-model")

    request = ADAPTER.request("chat", target, {"messages": HELLO})

    assert request.url == "https://api.replicate.test/v1/predictions"
    assert orjson.loads(request.content) == {"version": "ac808388e2e9", "input": {"prompt": "Hello"}}  # type: ignore[arg-type]


def test_a_stream_is_asked_for_at_creation_without_the_sync_wait() -> None:
    request = ADAPTER.request("chat", TARGET, {"messages": HELLO, "stream": True})

    assert "prefer" not in request.headers
    assert orjson.loads(request.content) == {"input": {"prompt": "Hello"}, "stream": True}  # type: ignore[arg-type]


def test_the_routes_cap_is_sent_when_the_client_gives_none() -> None:
    target = Target(provider=PROVIDER, upstream_model="meta/llama", public_model="m", max_output_tokens=256)

    assert sent({"messages": HELLO}, target)["input"]["max_tokens"] == 256
    assert sent({"messages": HELLO, "max_tokens": 9}, target)["input"]["max_tokens"] == 9


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"messages": HELLO}, {"prompt": "Hello"}, id="a-lone-question-goes-bare"),
        pytest.param(
            {"messages": [{"role": "developer", "content": "Rhyme."}, *HELLO], "max_completion_tokens": 5},
            {"prompt": "Hello", "system_prompt": "Rhyme.", "max_tokens": 5},
            id="system-in-its-own-input",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "system", "content": "One."},
                    {"role": "system", "content": [{"type": "text", "text": "Two."}]},
                    *HELLO,
                    {"role": "assistant", "content": "Hi."},
                    {"role": "user", "content": "Again"},
                ]
            },
            {"prompt": "User: Hello\n\nAssistant: Hi.\n\nUser: Again\n\nAssistant:", "system_prompt": "One.\n\nTwo."},
            id="a-conversation-as-a-transcript",
        ),
        pytest.param(
            {"messages": [*HELLO, {"role": "assistant", "content": "Once upon"}]},
            {"prompt": "User: Hello\n\nAssistant: Once upon"},
            id="a-last-assistant-turn-is-carried-on",
        ),
        pytest.param(
            {"messages": HELLO, "temperature": 0, "top_p": 0.5, "stop": "END", "max_tokens": 7},
            {"prompt": "Hello", "temperature": 0, "top_p": 0.5, "stop_sequences": "END", "max_tokens": 7},
            id="sampling",
        ),
        pytest.param(
            {"messages": HELLO, "stop": ["a", "b"], "seed": 3, "user": "u-1"},
            {"prompt": "Hello", "stop_sequences": "a,b"},
            id="stops-comma-joined-and-the-rest-dropped",
        ),
    ],
)
def test_openai_chat_becomes_the_prediction_input(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert prediction_input(body, DEFAULTS) == expected


def test_the_providers_options_rename_the_inputs_and_rewrite_the_template() -> None:
    options = with_defaults(
        OPTIONS,
        {
            "prompt_input": "text",
            "system_prompt_input": "",
            "max_tokens_input": "max_new_tokens",
            "temperature_input": "",
            "stop_input": "stop",
            "turn_template": "<|{role}|>\n{content}",
            "turn_separator": "\n",
            "plain_single_turn": False,
        },
    )
    body = {"messages": [{"role": "system", "content": "Be kind."}, *HELLO], "max_tokens": 3, "temperature": 1}

    assert prediction_input({**body, "stop": ["x"]}, options) == {
        "text": "<|System|>\nBe kind.\n<|User|>\nHello\n<|Assistant|>",
        "max_new_tokens": 3,
        "stop": "x",
    }


def test_a_conversation_with_no_turns_is_only_the_cue() -> None:
    assert render([], DEFAULTS) == "Assistant:"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}]},
            "messages[0].tool_calls",
        ),
        ({"messages": [{"role": "tool", "tool_call_id": "c", "content": "18"}]}, "messages[0].role"),
    ],
)
def test_what_a_prompt_cannot_carry_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        ADAPTER.request("chat", TARGET, {"messages": HELLO, **body})

    assert refused.value.param == param


def test_a_tool_choice_of_none_without_tools_is_no_tool_use() -> None:
    assert sent({"messages": HELLO, "tool_choice": "none"}) == {"input": {"prompt": "Hello"}}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_tokens_input": "max_new_tokens", "stop_input": ""},
        {"turn_template": "### {role}:\n{content}", "sync_wait": 1},
        {"turn_template": "{{literal}} {content}"},
    ],
)
def test_options_that_work_are_kept_as_given(options: dict[str, Any]) -> None:
    assert ADAPTER.clean_options(options) == options


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"prompt_input": ""}, "must name a model input"),
        ({"max_tokens_input": "max tokens"}, "must name a model input"),
        ({"top_p_input": "prompt"}, "different input"),
        ({"turn_template": "{role}: {text}"}, "not 'text'"),
        ({"turn_template": "{role}:"}, "must place the turn's {content}"),
        ({"turn_template": "{content.upper}"}, "may only use"),
        ({"turn_template": "{content"}, "not a valid template"),
        ({"sync_wait": 0}, "from 1 to 60"),
        ({"sync_wait": 61}, "from 1 to 60"),
        ({"sync_wait": "60"}, "must be an integer"),
        ({"prompt_template": "{content}"}, "Unknown option"),
    ],
)
def test_options_that_cannot_work_are_refused_saying_why(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(InvalidOptions) as refused:
        ADAPTER.clean_options(options)

    assert complaint in str(refused.value)


def test_the_model_list_is_owner_and_name() -> None:
    request = ADAPTER.models_request(PROVIDER)
    page = {"next": None, "results": [{"owner": "meta", "name": "llama"}, {"owner": "mistralai", "name": "mixtral"}]}

    assert (request.method, request.url) == ("GET", "https://api.replicate.test/v1/models")
    assert ADAPTER.model_ids(orjson.dumps(page)) == ["meta/llama", "mistralai/mixtral"]
    with pytest.raises(ValueError, match="not a Replicate model list"):
        ADAPTER.model_ids(b'{"models": []}')


def test_a_provider_may_name_the_credential_header_and_add_its_own() -> None:
    provider = make_provider_info(
        kind="replicate", credential_header="X-Gateway-Key", extra_headers={"X-Account-Key": "acct-1"}
    )
    target = Target(provider, "meta/llama", "house-model")

    headers = ADAPTER.request("chat", target, {"messages": HELLO}).headers

    assert (headers["x-gateway-key"], headers["X-Account-Key"]) == (CREDENTIAL, "acct-1")
    assert "authorization" not in headers
