"""The fast path's request is, attribute for attribute, the one Django's ASGIRequest constructor makes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import override_settings

from gateway import asgi_request
from gateway.asgi_request import build_request

BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


def _scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.7", 50123),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


SCOPES = {
    "an SDK's request": _scope(
        [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(BODY)),
            (b"authorization", b"Bearer pk-abc.def"),
            (b"user-agent", b"OpenAI/Python 1.99.0"),
            (b"x-stainless-retry-count", b"0"),
        ]
    ),
    "repeated headers, in order": _scope(
        [
            (b"accept", b"text/plain"),
            (b"x-trace", b"a"),
            (b"accept", b"application/json"),
            (b"x-trace", b"b"),
            (b"x-trace", b"c"),
        ]
    ),
    "a name with an underscore is left out": _scope([(b"api_key", b"spoofed"), (b"api-key", b"pk-real")]),
    "a charset Python knows": _scope([(b"content-type", b"application/json; charset=latin-1")]),
    "a charset Python does not know": _scope([(b"content-type", b"text/plain; charset=no-such-codec; q=1")]),
    "bytes beyond ASCII": _scope([(b"x-name", "caf\u00e9".encode("latin1")), (b"X-Upper", b"v")]),
    "a query string, a lower-case method, no client, no server": _scope(
        [], method="get", path="/v1/models", query_string=b"limit=2&after=x", client=None, server=None
    ),
    "a query string as text, under a root path": _scope(
        [], path="/portico/v1/models", root_path="/portico", query_string="a=1"
    ),
    "no headers at all": {"type": "http", "method": "POST", "path": "/v1/embeddings"},
}


def _state(request: ASGIRequest) -> dict[str, Any]:
    state = dict(vars(request))
    state["_stream"] = request._stream.read()
    return state


def _django(scope: dict[str, Any], body: bytes) -> ASGIRequest:
    request = ASGIRequest(scope, io.BytesIO(body))
    request._body = body
    return request


@pytest.mark.parametrize("scope", SCOPES.values(), ids=SCOPES.keys())
def test_it_is_what_django_builds(scope: dict[str, Any]) -> None:
    # Twice: the second time the header names and content type come from the tables.
    for _ in range(2):
        ours, django = build_request(scope, BODY), _django(scope, BODY)
        assert _state(ours) == _state(django)
        assert list(ours.META) == list(django.META)  # the same order too
        assert (ours.encoding, ours.content_type, ours.content_params) == (
            django.encoding,
            django.content_type,
            django.content_params,
        )
        assert ours.body == BODY
        assert ours.headers == django.headers
        assert ours.GET == django.GET


def test_a_forced_script_name_is_used_as_django_uses_it() -> None:
    scope = SCOPES["a query string as text, under a root path"]
    with override_settings(FORCE_SCRIPT_NAME="/gateway"):
        ours, django = build_request(scope, b""), _django(scope, b"")
        assert (ours.script_name, ours.path_info) == (django.script_name, django.path_info) == ("/gateway", ours.path)


def test_each_request_has_its_own_content_params() -> None:
    scope = SCOPES["a charset Python knows"]
    first = build_request(scope, b"")
    first.content_params["charset"] = "utf-8"
    assert build_request(scope, b"").content_params == {"charset": "latin-1"}


def test_ever_new_names_and_types_are_read_right_past_what_is_remembered() -> None:
    for number in range(3 * asgi_request._REMEMBERED):
        scope = _scope([(b"x-h%d" % number, b"v"), (b"content-type", b"text/plain; n=%d" % number)])
        ours, django = build_request(scope, b""), _django(scope, b"")
        assert _state(ours) == _state(django)
    assert asgi_request._meta_key.cache_info().currsize <= asgi_request._REMEMBERED
