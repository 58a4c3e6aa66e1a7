"""Model-list sources and discovered models in the admin and the management API, against a real list server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from billing.tests.factories import make_user, token_headers
from providers.credentials import decrypt_credential
from providers.discovery import discovery_run
from providers.model_lists.handles import default_handle_kinds
from providers.model_lists.services import model_list_source_create, model_list_source_refresh
from providers.models import DiscoveredModel, ModelListSource, PublicModel
from providers.probes import deployment_probes_run
from providers.tests.factories import make_provider, make_route
from tests.fakes.behaviours import Reply
from tests.fakes.model_list_server import FakeModelList

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

LIST_CREDENTIAL = "sk-list-console-0123456789"
GPT = {
    "model_version": "gpt-console",
    "handle": "/openai/v1/chat/completions",
    "prompt_price_1k": 0.001,
    "completion_price_1k": 0.002,
}
CLAUDE = {
    "model_version": "claude-console",
    "model_family": "claude-3",
    "handle": "/anthropic/v1/messages",
    "prompt_price_1k": 0.003,
    "completion_price_1k": 0.015,
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelList]:
    fake = FakeModelList(list_credential=LIST_CREDENTIAL)
    fake.start()
    yield fake
    fake.stop()


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def source_form(server: FakeModelList, **fields: str) -> dict[str, str]:
    data = {
        "name": "corp",
        "url": server.list_url,
        "base_url": "",
        "credential": "",
        "refresh_interval": "300",
        "enabled": "on",
        "handle_kinds": json.dumps(default_handle_kinds()),
        "refreshes-TOTAL_FORMS": "0",
        "refreshes-INITIAL_FORMS": "0",
    }
    return {**data, **fields}


# --- the admin ---


def test_the_admin_stores_a_sources_credential_encrypted_and_never_shows_it(
    admin_client: Client, server: FakeModelList
) -> None:
    response = admin_client.post(
        reverse("admin:providers_modellistsource_add"), source_form(server, credential=LIST_CREDENTIAL)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = ModelListSource.objects.get(name="corp")

    page = admin_client.get(reverse("admin:providers_modellistsource_change", args=[source.pk])).content.decode()

    assert decrypt_credential(source.credential_encrypted) == LIST_CREDENTIAL
    assert LIST_CREDENTIAL not in page
    assert source.credential_encrypted not in page


def test_refresh_now_applies_the_list_and_reports_the_diff(admin_client: Client, server: FakeModelList) -> None:
    source = model_list_source_create(name="corp", url=server.list_url, credential=LIST_CREDENTIAL)
    server.serve([GPT, CLAUDE, {**GPT, "model_version": "bad", "handle": "/x"}])

    response = admin_client.post(
        reverse("admin:providers_modellistsource_changelist"),
        {"action": "refresh_now", "_selected_action": [source.pk]},
        follow=True,
    )

    assert messages_of(response) == ["corp: added gpt-console, claude-console; 1 entries not applied"]
    page = admin_client.get(reverse("admin:providers_modellistsource_change", args=[source.pk])).content.decode()
    assert "<strong>added</strong>: gpt-console, claude-console" in page
    assert "#3 bad: no rule of this source says which kind of provider serves &#x27;/x&#x27;" in page


def test_a_failed_refresh_is_reported_as_an_error(admin_client: Client, server: FakeModelList) -> None:
    source = model_list_source_create(name="corp", url=server.list_url, credential=LIST_CREDENTIAL)
    server.answer(503, b"{}")

    response = admin_client.post(
        reverse("admin:providers_modellistsource_changelist"),
        {"action": "refresh_now", "_selected_action": [source.pk]},
        follow=True,
    )

    assert messages_of(response) == ["corp: failed: the list answered HTTP 503, not 200"]


def test_the_admin_offers_unrouted_discovered_models_and_routes_one_in_a_click(admin_client: Client) -> None:
    fake = FakeModelList()
    fake.start()
    try:
        fake.openai.script("qwen-72b", Reply())
        fake.openai.script("served", Reply())
        provider = make_provider(kind="openai", name="vllm", base_url=f"{fake.origin}/openai/v1")
        make_route(provider=provider, public_id="our-served", upstream_model="served")
        discovery_run(provider_ids=[provider.pk])
    finally:
        fake.stop()
    changelist = reverse("admin:providers_discoveredmodel_changelist")

    listing = admin_client.get(changelist).content.decode()
    qwen = DiscoveredModel.objects.get(upstream_id="qwen-72b")
    response = admin_client.post(changelist, {"action": "route", "_selected_action": [qwen.pk]}, follow=True)

    assert "qwen-72b" in listing
    assert ">served<" not in listing  # routed already: not offered
    assert messages_of(response)[0].startswith("qwen-72b is served by vllm. It has no tenant price")
    assert PublicModel.objects.get(public_id="qwen-72b").deployments.get().provider == provider


@pytest.mark.parametrize("model", ["modellistsource", "discoveredmodel", "deploymentprobe"])
def test_the_new_pages_of_the_console_answer(admin_client: Client, model: str) -> None:
    make_route(provider=make_provider(kind="mock", name="mock"))
    deployment_probes_run()  # a check of the mock, in-process

    assert admin_client.get(reverse(f"admin:providers_{model}_changelist")).status_code == 200


# --- the management API ---


@pytest.fixture
def api() -> Client:
    """Django's test client, in this process (the `client` of these tests' conftest is the OpenAI SDK's)."""
    return Client()


@pytest.fixture
def operator() -> dict[str, str]:
    return token_headers(make_user(username="operator", staff=True))


def test_the_api_creates_a_source_with_a_write_only_credential_and_refreshes_it(
    api: Client, operator: dict[str, str], server: FakeModelList
) -> None:
    server.serve([GPT])
    created = api.post(
        "/api/model-list-sources/",
        {"name": "corp", "url": server.list_url, "credential": LIST_CREDENTIAL},
        content_type="application/json",
        headers=operator,
    )
    assert created.status_code == 201, created.content
    body = created.json()

    refreshed = api.post(f"/api/model-list-sources/{body['id']}/refresh/", headers=operator)
    history = api.get(f"/api/model-list-sources/{body['id']}/refreshes/", headers=operator)
    shown = api.get(f"/api/model-list-sources/{body['id']}/", headers=operator).json()

    assert "credential" not in body
    assert body["has_credential"] is True
    assert body["handle_kinds"] == default_handle_kinds()
    assert refreshed.status_code == 200
    assert refreshed.json()["status"] == "ok"
    assert refreshed.json()["diff"] == {"added": ["gpt-console"], "changed": [], "disabled": [], "reenabled": []}
    assert [row["id"] for row in history.json()["results"]] == [refreshed.json()["id"]]
    assert (shown["last_status"], shown["last_error"]) == ("ok", "")
    assert LIST_CREDENTIAL not in json.dumps(shown)


def test_the_api_refuses_rules_it_cannot_follow_and_keeps_a_left_out_credential(
    api: Client, operator: dict[str, str], server: FakeModelList
) -> None:
    source = model_list_source_create(name="corp", url=server.list_url, credential=LIST_CREDENTIAL)
    url = f"/api/model-list-sources/{source.pk}/"

    refused = api.patch(
        url, {"handle_kinds": [{"prefix": "/azure/", "kind": "azure"}]}, content_type="application/json",
        headers=operator,
    )  # fmt: skip
    changed = api.patch(url, {"refresh_interval": 60}, content_type="application/json", headers=operator)

    assert refused.status_code == 400
    assert "handle_kinds" in refused.json()
    assert changed.status_code == 200
    source.refresh_from_db()
    assert (source.refresh_interval, decrypt_credential(source.credential_encrypted)) == (60, LIST_CREDENTIAL)


def test_only_operators_may_use_the_sources_api(api: Client, server: FakeModelList) -> None:
    source = model_list_source_create(name="corp", url=server.list_url)
    model_list_source_refresh(source=source)
    tenant_admin = token_headers(make_user(username="tenant-admin"))

    assert api.get("/api/model-list-sources/").status_code == 401
    assert api.get("/api/model-list-sources/", headers=tenant_admin).status_code == 403
    assert api.post(f"/api/model-list-sources/{source.pk}/refresh/", headers=tenant_admin).status_code == 403
