"""The Gemini adapter's requests: OpenAI chat and embeddings bodies in, Gemini's URLs, headers and bodies out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.adapters import adapter_for
from providers.adapters.base import Target, UnsupportedParameter, UpstreamRequest
from providers.adapters.gemini import DEFAULT_BASE_URL, GeminiAdapter
from providers.adapters.gemini.requests import generate_body
from providers.tests.factories import make_provider_info

KEY = "AIzaSyUnitTestGeminiKey0123456789"
PROVIDER = make_provider_info(
    kind="gemini", base_url="https://gemini.test", credential=KEY, extra_headers={"X-Goog-User-Project": "acme"}
)
TARGET = Target(PROVIDER, upstream_model="gemini-2.5-flash", public_model="house-gemini")
ADAPTER = GeminiAdapter()
USER = {"role": "user", "content": "Hello"}


def sent(request: UpstreamRequest) -> dict[str, Any]:
    assert isinstance(request.content, bytes)
    body: dict[str, Any] = orjson.loads(request.content)
    return body


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "house-gemini", "messages": [USER], **fields}


def test_the_kind_is_registered_with_googles_api_as_its_default_base() -> None:
    adapter = adapter_for("gemini")

    assert isinstance(adapter, GeminiAdapter)
    assert adapter.default_base_url == DEFAULT_BASE_URL == "https://generativelanguage.googleapis.com"
    assert adapter.operations == frozenset({"chat", "embeddings"})


@pytest.mark.parametrize(
    ("body", "model", "url"),
    [
        (chat(), "gemini-2.5-flash", "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent"),
        (
            chat(stream=True),
            "gemini-2.5-flash",
            "https://gemini.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        ),
        (chat(), "models/gemini-2.5-pro", "https://gemini.test/v1beta/models/gemini-2.5-pro:generateContent"),
    ],
)
def test_chat_goes_to_generate_content_or_its_sse_stream(body: dict[str, Any], model: str, url: str) -> None:
    request = ADAPTER.request("chat", Target(PROVIDER, model, "house-gemini"), body)

    assert (request.method, request.url) == ("POST", url)
    assert request.headers == {
        "accept-encoding": "identity",
        "content-type": "application/json",
        "X-Goog-User-Project": "acme",
        "x-goog-api-key": KEY,
    }
    assert "stream" not in sent(request)  # the URL says it, and Gemini refuses unknown fields


def test_the_rows_api_version_replaces_v1beta_in_every_path() -> None:
    provider = make_provider_info(kind="gemini", base_url="https://gemini.test", api_version="v1", extra_headers={})

    chat_request = ADAPTER.request("chat", Target(provider, "gemini-2.5-flash", "house-gemini"), chat())
    models_request = ADAPTER.models_request(provider)

    assert chat_request.url == "https://gemini.test/v1/models/gemini-2.5-flash:generateContent"
    assert models_request.url == "https://gemini.test/v1/models?pageSize=1000"


def test_a_credential_header_set_on_the_row_takes_the_key_instead() -> None:
    provider = make_provider_info(
        kind="gemini",
        base_url="https://gemini.test",
        credential="ya29.token",
        credential_header="authorization",
        extra_headers={},
    )

    request = ADAPTER.request("chat", Target(provider, "gemini-2.5-flash", "house-gemini"), chat())

    assert request.headers["authorization"] == "Bearer ya29.token"
    assert "x-goog-api-key" not in request.headers


GENERATION_CASES = [
    pytest.param({"temperature": 0.2, "top_p": 0.5}, {"temperature": 0.2, "topP": 0.5}, id="sampling"),
    pytest.param({"max_tokens": 10}, {"maxOutputTokens": 10}, id="max-tokens"),
    pytest.param({"max_tokens": 10, "max_completion_tokens": 20}, {"maxOutputTokens": 20}, id="completion-cap-wins"),
    pytest.param({"stop": "END"}, {"stopSequences": ["END"]}, id="stop-string"),
    pytest.param({"stop": ["A", "B"]}, {"stopSequences": ["A", "B"]}, id="stop-list"),
    pytest.param({"n": 3}, {"candidateCount": 3}, id="n"),
    pytest.param({"n": 1}, None, id="n-one-is-the-default"),
    pytest.param(
        {"seed": 4, "presence_penalty": 0.1, "frequency_penalty": 0.3},
        {"seed": 4, "presencePenalty": 0.1, "frequencyPenalty": 0.3},
        id="penalties",
    ),
    pytest.param(
        {"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}, id="json-object"
    ),
    pytest.param({"response_format": {"type": "text"}}, None, id="text"),
    pytest.param(
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "strict": True,
                    "schema": {
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "type": "object",
                        "properties": {"name": {"type": "object", "properties": {}, "additionalProperties": False}},
                        "additionalProperties": False,
                    },
                },
            }
        },
        {
            "responseMimeType": "application/json",
            "responseSchema": {"type": "object", "properties": {"name": {"type": "object", "properties": {}}}},
        },
        id="json-schema-without-refused-keys",
    ),
    pytest.param({"reasoning_effort": "none"}, {"thinkingConfig": {"thinkingBudget": 0}}, id="effort-none-is-off"),
    pytest.param({"reasoning_effort": "minimal"}, {"thinkingConfig": {"thinkingBudget": 1024}}, id="effort-minimal"),
    pytest.param({"reasoning_effort": "low"}, {"thinkingConfig": {"thinkingBudget": 1024}}, id="effort-low"),
    pytest.param({"reasoning_effort": "medium"}, {"thinkingConfig": {"thinkingBudget": 8192}}, id="effort-medium"),
    pytest.param({"reasoning_effort": "high"}, {"thinkingConfig": {"thinkingBudget": 24576}}, id="effort-high"),
    pytest.param({"reasoning_effort": "xhigh"}, {"thinkingConfig": {"thinkingBudget": 24576}}, id="effort-xhigh"),
    pytest.param(
        {"reasoning_effort": "high", "max_completion_tokens": 30000, "temperature": 0.5},
        {"thinkingConfig": {"thinkingBudget": 24576}, "maxOutputTokens": 30000, "temperature": 0.5},
        id="effort-beside-other-settings",
    ),
]


@pytest.mark.parametrize(("fields", "config"), GENERATION_CASES)
def test_openais_parameters_become_the_generation_config(fields: dict[str, Any], config: dict[str, Any] | None) -> None:
    body = generate_body(chat(user="someone", parallel_tool_calls=True, **fields))

    assert body.get("generationConfig") == config
    assert set(body) <= {"contents", "generationConfig"}


def test_system_and_developer_messages_become_the_system_instruction_and_turns_alternate() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": [{"type": "text", "text": "Two."}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": "Un, deux."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Three?"},
    ]

    body = generate_body({"messages": messages})

    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nAnswer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "One."}, {"text": "Two."}]},
        {"role": "model", "parts": [{"text": "Un, deux."}]},
        {"role": "user", "parts": [{"text": "Three?"}]},
    ]


def test_images_audio_and_files_go_inline() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAA=", "detail": "high"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]

    [turn] = generate_body({"messages": [{"role": "user", "content": content}]})["contents"]

    assert turn["parts"] == [
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/AAA="}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


REFUSALS = [
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
            ]
        },
        "messages[0].content[0].image_url.url",
        "cannot fetch",
        id="image-url",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}
            ]
        },
        "messages[0].content[0].image_url.url",
        "base64 data URLs",
        id="data-url-not-base64",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "flac"}}]}
            ]
        },
        "messages[0].content[0].input_audio",
        "wav",
        id="audio-format",
    ),
    pytest.param({"messages": [USER], "logprobs": True}, "logprobs", "log probabilities", id="logprobs"),
    pytest.param({"messages": [USER], "modalities": ["text", "audio"]}, "modalities", "audio", id="audio-out"),
    pytest.param({"messages": [USER], "functions": []}, "functions", "deprecated", id="functions"),
    pytest.param(
        {"messages": [USER], "tools": [{"type": "custom", "custom": {"name": "x"}}]},
        "tools",
        "function",
        id="custom-tool",
    ),
    pytest.param(
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"},
        "tool_choice",
        "named function",
        id="tool-choice",
    ),
    pytest.param(
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_unknown", "content": "42"}]},
        "messages[1].tool_call_id",
        "tool call made earlier",
        id="orphan-tool-result",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                }
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
        "JSON object",
        id="arguments-not-an-object",
    ),
    pytest.param({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role", "not supported", id="role"),
    pytest.param({"messages": [USER], "reasoning_effort": "max"}, "reasoning_effort", "'high'", id="effort-unknown"),
    pytest.param({"messages": [USER], "reasoning_effort": "HIGH"}, "reasoning_effort", "'none'", id="effort-case"),
    pytest.param({"messages": [USER], "reasoning_effort": 3}, "reasoning_effort", "must be one of", id="effort-number"),
    pytest.param(
        {"messages": [USER], "reasoning_effort": ["low"]}, "reasoning_effort", "must be one of", id="effort-list"
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "Describe what you see."},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                },
                USER,
            ]
        },
        "messages[0].content[1]",
        "only text parts",
        id="image-in-a-system-message",
    ),
]


@pytest.mark.parametrize(("body", "param", "says"), REFUSALS)
def test_what_gemini_cannot_do_as_asked_is_refused_by_name(body: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        ADAPTER.request("chat", TARGET, body)

    assert caught.value.param == param
    assert says in caught.value.message


def test_tools_become_function_declarations_and_a_named_choice_allows_only_that_function() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]

    body = generate_body(
        {"messages": [USER], "tools": tools, "tool_choice": {"type": "function", "function": {"name": "now"}}}
    )

    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "lookup",
                    "description": "Look up",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
                {"name": "now"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}}


def test_a_tool_round_trip_names_each_result_by_its_calls_function_and_keeps_the_signature() -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            "extra_content": {"google": {"thought_signature": "sig=="}},
        },
        {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}},
    ]
    messages = [
        USER,
        {"role": "assistant", "content": "Let me see.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"hits": 2}'},
        {"role": "user", "content": "Thanks."},
    ]

    contents = generate_body({"messages": messages})["contents"]

    assert contents == [
        {"role": "user", "parts": [{"text": "Hello"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me see."},
                {"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "sig=="},
                {"functionCall": {"name": "now", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "now", "response": {"content": "noon"}}},
                {"functionResponse": {"name": "lookup", "response": {"hits": 2}}},
                {"text": "Thanks."},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("given", "method", "body"),
    [
        (
            {"input": "one text"},
            "embedContent",
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "one text"}]}},
        ),
        (
            {"input": ["a", "b"], "dimensions": 256},
            "batchEmbedContents",
            {
                "requests": [
                    {
                        "model": "models/text-embedding-004",
                        "content": {"parts": [{"text": "a"}]},
                        "outputDimensionality": 256,
                    },
                    {
                        "model": "models/text-embedding-004",
                        "content": {"parts": [{"text": "b"}]},
                        "outputDimensionality": 256,
                    },
                ]
            },
        ),
    ],
)
def test_embeddings_go_to_embed_content_for_one_text_and_the_batch_method_for_several(
    given: dict[str, Any], method: str, body: dict[str, Any]
) -> None:
    request = ADAPTER.request(
        "embeddings", Target(PROVIDER, "text-embedding-004", "house-embed"), {"model": "house-embed", **given}
    )

    assert request.url == f"https://gemini.test/v1beta/models/text-embedding-004:{method}"
    assert sent(request) == body


@pytest.mark.parametrize("given", [[1, 2, 3], [[1, 2], [3]], [], None])
def test_token_id_input_is_refused_for_embeddings(given: Any) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        ADAPTER.request("embeddings", TARGET, {"model": "house-embed", "input": given})

    assert caught.value.param == "input"


def test_the_model_list_is_asked_for_in_one_page_and_read_by_route_names() -> None:
    request = ADAPTER.models_request(PROVIDER)
    listed = orjson.dumps({"models": [{"name": "models/gemini-2.5-flash"}, {"name": "models/text-embedding-004"}]})

    assert (request.method, request.url) == ("GET", "https://gemini.test/v1beta/models?pageSize=1000")
    assert request.headers["x-goog-api-key"] == KEY
    assert "content-type" not in request.headers
    assert ADAPTER.model_ids(listed) == ["gemini-2.5-flash", "text-embedding-004"]
    with pytest.raises(ValueError, match="not a Gemini model list"):
        ADAPTER.model_ids(b'{"data": []}')
