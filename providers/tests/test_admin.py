from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from providers.credentials import decrypt_credential, decrypt_headers
from providers.models import Provider, PublicModel
from providers.services import provider_test_connection
from providers.tests.factories import make_provider, make_route

pytestmark = pytest.mark.django_db

CREDENTIAL = "sk-upstream-credential-0123456789"


@dataclass
class Upstream:
    """A real OpenAI-compatible models endpoint on 127.0.0.1, answering what a test tells it to."""

    base_url: str = ""
    status: int = 200
    body: dict = field(default_factory=lambda: {"object": "list", "data": [{"id": "gpt-4o"}, {"id": "o1"}]})
    seen_authorization: list[str] = field(default_factory=list)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    state = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen_authorization.append(self.headers.get("Authorization", ""))
            payload = json.dumps(state.body).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _provider_data(**fields) -> dict:
    data = {
        "name": "OpenAI",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": "",
        "connect_timeout": "5",
        "read_timeout": "120",
        "total_timeout": "600",
        "extra_headers": "{}",
        "active": "on",
    }
    return {**data, **fields}


def _assert_no_credential(html: str, provider: Provider) -> None:
    assert CREDENTIAL not in html
    assert provider.credential_encrypted not in html


# --- the credential --------------------------------------------------------


def test_a_credential_entered_in_the_form_is_stored_encrypted(admin_client):
    admin_client.post(reverse("admin:providers_provider_add"), _provider_data(credential=CREDENTIAL))

    provider = Provider.objects.get(name="OpenAI")
    assert provider.credential_encrypted != CREDENTIAL
    assert decrypt_credential(provider.credential_encrypted) == CREDENTIAL


def test_a_blank_credential_keeps_the_stored_one(admin_client):
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1", credential=CREDENTIAL)
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    admin_client.post(url, _provider_data(name=provider.name, read_timeout="30"))

    provider.refresh_from_db()
    assert provider.read_timeout == 30
    assert decrypt_credential(provider.credential_encrypted) == CREDENTIAL


def test_a_new_credential_replaces_the_stored_one(admin_client):
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1", credential=CREDENTIAL)
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    admin_client.post(url, _provider_data(name=provider.name, credential="sk-rotated"))

    provider.refresh_from_db()
    assert decrypt_credential(provider.credential_encrypted) == "sk-rotated"


def test_clear_credential_removes_it(admin_client):
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1", credential=CREDENTIAL)
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    admin_client.post(url, _provider_data(name=provider.name, clear_credential="on"))

    provider.refresh_from_db()
    assert provider.credential_encrypted == ""


def test_a_new_credential_and_clear_together_are_refused(admin_client):
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1", credential=CREDENTIAL)
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    response = admin_client.post(url, _provider_data(name=provider.name, credential="sk-new", clear_credential="on"))

    assert "not both" in response.content.decode()
    provider.refresh_from_db()
    assert decrypt_credential(provider.credential_encrypted) == CREDENTIAL


def test_provider_pages_never_show_the_credential(admin_client):
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1", credential=CREDENTIAL)
    pages = [
        reverse("admin:providers_provider_changelist"),
        reverse("admin:providers_provider_change", args=[provider.pk]),
        reverse("admin:providers_provider_delete", args=[provider.pk]),
        reverse("admin:providers_provider_history", args=[provider.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200
        _assert_no_credential(response.content.decode(), provider)


def test_a_refused_form_does_not_echo_the_credential_back(admin_client):
    response = admin_client.post(
        reverse("admin:providers_provider_add"), _provider_data(name="", credential=CREDENTIAL)
    )

    assert response.status_code == 200
    assert CREDENTIAL not in response.content.decode()


def test_the_list_says_whether_a_provider_has_a_credential_and_that_the_mock_needs_none(admin_client):
    make_provider(name="with", kind="openai", base_url="https://a.example/v1", credential=CREDENTIAL)
    make_provider(name="without", kind="openai", base_url="https://b.example/v1")
    make_provider(name="mock", kind="mock")

    response = admin_client.get(reverse("admin:providers_provider_changelist"))

    listed = response.context["cl"]
    shown = {p.name: str(listed.model_admin.credential_state(p)) for p in listed.result_list}
    assert 'alt="True"' in shown["with"]
    assert 'alt="False"' in shown["without"]
    assert shown["mock"] == "not needed"
    assert '<td class="field-credential_state">not needed</td>' in response.content.decode()


def test_an_openai_compatible_provider_needs_a_base_url(admin_client):
    response = admin_client.post(reverse("admin:providers_provider_add"), _provider_data(base_url=""))

    assert "This kind of provider needs a base URL." in response.content.decode()
    assert not Provider.objects.exists()


def test_a_mock_provider_needs_no_base_url(admin_client):
    admin_client.post(reverse("admin:providers_provider_add"), _provider_data(kind="mock", base_url=""))

    assert Provider.objects.get(name="OpenAI").kind == "mock"


# --- test connection --------------------------------------------------------


def test_the_mock_provider_passes_the_connection_test():
    result = provider_test_connection(provider=make_provider(kind="mock"))

    assert result.ok
    assert result.model_ids == ("mock-echo",)


def test_the_connection_test_calls_the_upstream_with_the_credential(upstream):
    provider = make_provider(kind="openai", base_url=upstream.base_url, credential=CREDENTIAL)

    result = provider_test_connection(provider=provider)

    assert result.ok
    assert result.model_ids == ("gpt-4o", "o1")
    assert upstream.seen_authorization == [f"Bearer {CREDENTIAL}"]


def test_the_connection_test_reports_an_unreachable_upstream():
    provider = make_provider(kind="openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    result = provider_test_connection(provider=provider)

    assert not result.ok
    assert "could not reach" in result.summary


def test_the_connection_test_reports_an_upstream_error_without_the_credential(upstream):
    upstream.status = 401
    upstream.body = {"error": {"message": f"Incorrect API key provided: {CREDENTIAL}", "type": "invalid_request_error"}}
    provider = make_provider(kind="openai", base_url=upstream.base_url, credential=CREDENTIAL)

    result = provider_test_connection(provider=provider)

    assert not result.ok
    assert result.summary.startswith("HTTP 401")
    assert CREDENTIAL not in result.summary


def test_the_connection_test_reports_a_credential_it_cannot_decrypt():
    provider = make_provider(kind="openai", base_url="https://api.openai.com/v1")
    provider.credential_encrypted = "not-a-fernet-token"

    result = provider_test_connection(provider=provider)

    assert not result.ok
    assert "cannot be decrypted" in result.summary


def test_the_test_connection_action_reports_each_provider(admin_client):
    mock = make_provider(name="Mock", kind="mock")
    broken = make_provider(name="Broken", kind="openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    response = admin_client.post(
        reverse("admin:providers_provider_changelist"),
        {"action": "test_connection", "_selected_action": [mock.pk, broken.pk]},
        follow=True,
    )

    shown = [str(message) for message in response.context["messages"]]
    assert "Mock: OK: 1 model(s) (mock-echo)" in shown
    assert any(text.startswith("Broken: connection failed, could not reach") for text in shown)


def test_the_change_page_has_a_test_connection_button(admin_client):
    provider = make_provider(kind="mock")

    response = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk]))

    assert reverse("admin:providers_provider_test_connection", args=[provider.pk]) in response.content.decode()


def test_the_test_connection_button_reports_on_the_change_page(admin_client, upstream):
    provider = make_provider(name="Upstream", kind="openai", base_url=upstream.base_url, credential=CREDENTIAL)

    response = admin_client.post(reverse("admin:providers_provider_test_connection", args=[provider.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:providers_provider_change", args=[provider.pk])
    html = response.content.decode()
    assert "Upstream: OK: 2 model(s) (gpt-4o, o1)" in html
    _assert_no_credential(html, provider)


def test_the_test_connection_button_does_not_answer_get(admin_client):
    provider = make_provider(kind="mock")

    response = admin_client.get(reverse("admin:providers_provider_test_connection", args=[provider.pk]))

    assert response.status_code == 405


def test_the_test_connection_button_needs_a_staff_login(client):
    provider = make_provider(kind="mock")

    response = client.post(reverse("admin:providers_provider_test_connection", args=[provider.pk]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- public models and their deployments ---------------------------------


def _model_data(**fields):
    """An add form for a public model, with its deployments and billing's price inline as formsets."""
    data = {
        "public_id": "echo",
        "owned_by": "portico",
        "active": "on",
        "supports_chat": "on",
        "strategy": "priority",
        "retry_on": ["connect", "5xx"],
        "fallbacks": "",
        "deployments-TOTAL_FORMS": "0",
        "deployments-INITIAL_FORMS": "0",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
    }
    return {**data, **fields}


def _deployment(index, provider, upstream_model, **fields):
    prefix = f"deployments-{index}"
    values = {"provider": provider.pk, "upstream_model": upstream_model, "priority": 0, "weight": 1, "active": "on"}
    return {f"{prefix}-{name}": value for name, value in {**values, **fields}.items()}


def test_public_models_can_be_filtered_by_capability(admin_client):
    make_route(public_id="gpt-4o", supports_vision=True)
    make_route(public_id="gpt-3.5", supports_vision=False)

    response = admin_client.get(reverse("admin:providers_publicmodel_changelist") + "?supports_vision__exact=1")

    assert [m.public_id for m in response.context["cl"].result_list] == ["gpt-4o"]


def test_public_models_can_be_found_by_a_deployments_provider(admin_client):
    make_route(public_id="llama", provider=make_provider(name="Local vLLM", kind="mock"))
    make_route(public_id="llama", provider=make_provider(name="Other vLLM", kind="mock"))
    make_route(public_id="gpt-4o")

    response = admin_client.get(reverse("admin:providers_publicmodel_changelist") + "?q=vllm")

    assert [m.public_id for m in response.context["cl"].result_list] == ["llama"]


def test_the_public_model_list_shows_capabilities_and_deployment_counts(admin_client):
    make_route(public_id="gpt-4o", supports_vision=True)
    make_route(public_id="gpt-4o")

    response = admin_client.get(reverse("admin:providers_publicmodel_changelist"))

    assert "chat, streaming, tools, vision, json_mode" in response.content.decode()
    assert response.context["cl"].result_list[0].deployment_total == 2


def test_the_public_model_form_groups_metadata_capabilities_routing_and_timeouts(admin_client):
    route = make_route(public_id="gpt-4o")

    response = admin_client.get(reverse("admin:providers_publicmodel_change", args=[route.model_id]))

    names = [fieldset.name for fieldset in response.context["adminform"]]
    assert names == [None, "Metadata", "Capabilities", "Routing", "Timeouts", "Circuit breakers"]
    assert "deployments-0-upstream_model" in response.content.decode()


def test_a_public_model_with_two_deployments_can_be_added_from_the_admin(admin_client):
    make_route(public_id="fallback-model")
    first, second = make_provider(kind="mock"), make_provider(kind="mock")
    data = _model_data(
        fallbacks="fallback-model",
        strategy="weighted",
        **{"deployments-TOTAL_FORMS": "2"},
        **_deployment(0, first, "echo-a", weight=3),
        **_deployment(1, second, "echo-b", priority=1, max_in_flight=4),
    )

    response = admin_client.post(reverse("admin:providers_publicmodel_add"), data)

    assert response.status_code == 302
    model = PublicModel.objects.get(public_id="echo")
    assert (model.strategy, model.fallbacks, model.retry_on) == ("weighted", ["fallback-model"], ["connect", "5xx"])
    deployments = [(r.provider_id, r.upstream_model, r.weight, r.max_in_flight) for r in model.deployments.all()]
    assert deployments == [(first.pk, "echo-a", 3, None), (second.pk, "echo-b", 1, 4)]


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [("echo", "cannot be its own fallback"), ("no-such-model", "Unknown models: no-such-model")],
)
def test_a_fallback_must_be_another_existing_model(admin_client, fallbacks, message):
    data = _model_data(fallbacks=fallbacks, **{"deployments-TOTAL_FORMS": "1"}, **_deployment(0, make_provider(), "e"))

    response = admin_client.post(reverse("admin:providers_publicmodel_add"), data)

    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors)
    assert not PublicModel.objects.filter(public_id="echo").exists()


def test_deployments_can_be_filtered_by_provider_kind(admin_client):
    make_route(public_id="echo", provider=make_provider(kind="mock"))
    make_route(public_id="gpt-4o", provider=make_provider(kind="openai", base_url="https://a.example/v1"))

    response = admin_client.get(reverse("admin:providers_modelroute_changelist") + "?provider__kind__exact=openai")

    assert [r.public_id for r in response.context["cl"].result_list] == ["gpt-4o"]


def test_deployments_can_be_found_by_provider_name(admin_client):
    make_route(public_id="llama", provider=make_provider(name="Local vLLM", kind="mock"))
    make_route(public_id="gpt-4o")

    response = admin_client.get(reverse("admin:providers_modelroute_changelist") + "?q=vllm")

    assert [r.public_id for r in response.context["cl"].result_list] == ["llama"]


# --- the extra headers and the credential header ---

HEADER_VALUE = "acct-0123456789abcdef0123"


def test_extra_headers_entered_in_the_form_are_stored_encrypted(admin_client):
    headers = json.dumps({"X-Account-Key": HEADER_VALUE})
    admin_client.post(reverse("admin:providers_provider_add"), _provider_data(extra_headers=headers))

    provider = Provider.objects.get(name="OpenAI")
    assert HEADER_VALUE not in provider.extra_headers_encrypted
    assert decrypt_headers(provider.extra_headers_encrypted) == {"X-Account-Key": HEADER_VALUE}


def test_blank_extra_headers_keep_the_stored_ones_and_the_page_names_them_only(admin_client):
    provider = make_provider(
        kind="openai", base_url="https://a.example/v1", extra_headers={"X-Account-Key": HEADER_VALUE}
    )
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    html = admin_client.get(url).content.decode()
    admin_client.post(url, _provider_data(name=provider.name, extra_headers=""))

    assert "X-Account-Key" in html
    assert HEADER_VALUE not in html
    assert provider.extra_headers_encrypted not in html
    provider.refresh_from_db()
    assert decrypt_headers(provider.extra_headers_encrypted) == {"X-Account-Key": HEADER_VALUE}


def test_clear_extra_headers_removes_them(admin_client):
    provider = make_provider(
        kind="openai", base_url="https://a.example/v1", extra_headers={"X-Account-Key": HEADER_VALUE}
    )
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    admin_client.post(url, _provider_data(name=provider.name, extra_headers="", clear_extra_headers="on"))

    provider.refresh_from_db()
    assert provider.extra_headers_encrypted == ""


@pytest.mark.parametrize("headers", ['["a list"]', "not json", '{"bad name": "v"}', '{"X-Nested": {"a": 1}}'], ids=str)
def test_extra_headers_that_are_not_a_flat_json_object_of_header_names_are_refused(admin_client, headers):
    response = admin_client.post(reverse("admin:providers_provider_add"), _provider_data(extra_headers=headers))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["extra_headers"]
    assert not Provider.objects.exists()


def test_the_credential_header_is_a_header_name(admin_client):
    response = admin_client.post(reverse("admin:providers_provider_add"), _provider_data(credential_header="x api key"))
    admin_client.post(
        reverse("admin:providers_provider_add"), _provider_data(name="Gateway", credential_header="X-Key")
    )

    assert response.context["adminform"].form.errors["credential_header"]
    assert Provider.objects.get().credential_header == "X-Key"
