"""The provider console knows the gemini, cohere and replicate kinds: addresses, credentials, help and discovery."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from providers.facade import provider_info
from providers.models import Provider
from providers.tests.factories import make_provider

pytestmark = pytest.mark.django_db

CREDENTIAL = "upstream-credential-0123456789"


def provider_data(**fields: Any) -> dict[str, Any]:
    data = {
        "name": "upstream",
        "kind": "openai",
        "base_url": "",
        "credential": CREDENTIAL,
        "connect_timeout": "5",
        "read_timeout": "120",
        "total_timeout": "600",
        "extra_headers": "{}",
        "options": "{}",
        "active": "on",
    }
    return {**data, **fields}


@pytest.mark.parametrize(
    ("kind", "address"),
    [("gemini", "https://generativelanguage.googleapis.com"), ("replicate", "https://api.replicate.com")],
)
def test_a_kind_with_a_public_address_may_be_added_without_a_base_url(
    admin_client: Client, kind: str, address: str
) -> None:
    response = admin_client.post(reverse("admin:providers_provider_add"), provider_data(kind=kind))

    assert response.status_code == 302, response.content.decode()
    provider = Provider.objects.get(name="upstream")
    assert (provider.kind, provider.base_url, provider_info(provider).base_url) == (kind, "", address)


def test_a_cohere_provider_needs_a_base_url(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:providers_provider_add"), provider_data(kind="cohere"))

    assert "This kind of provider needs a base URL." in response.content.decode()
    assert not Provider.objects.exists()


def test_a_replicate_provider_without_a_credential_is_shown_as_lacking_one(admin_client: Client) -> None:
    # Replicate brings its own transport, yet it calls Replicate: unlike the mock, it needs a credential.
    make_provider(name="replicate", kind="replicate")
    make_provider(name="mock", kind="mock")

    response = admin_client.get(reverse("admin:providers_provider_changelist"))

    listed = response.context["cl"]
    shown = {p.name: str(listed.model_admin.credential_state(p)) for p in listed.result_list}
    assert 'alt="False"' in shown["replicate"]
    assert shown["mock"] == "not needed"


def test_the_provider_form_names_the_gemini_header_version_and_the_default_addresses(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:providers_provider_add")).content.decode()

    assert "x-goog-api-key for Gemini" in page
    assert "Gemini: the API version in the path, v1beta when blank" in page
    assert "https://generativelanguage.googleapis.com" in page
    assert "https://api.replicate.com" in page


def test_discovering_only_undiscoverable_kinds_names_every_kind_that_is_discovered(admin_client: Client) -> None:
    replicate = make_provider(name="replicate", kind="replicate", credential=CREDENTIAL)
    azure = make_provider(name="azure", kind="azure", base_url="http://127.0.0.1:9", api_version="2024-06-01")

    response = admin_client.post(
        reverse("admin:providers_provider_changelist"),
        {"action": "discover_models", "_selected_action": [replicate.pk, azure.pk]},
        follow=True,
    )

    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["None of them is of a kind Portico discovers (openai, anthropic, ollama, gemini, cohere)."]


@pytest.mark.django_db
def test_the_management_api_asks_a_base_url_only_of_kinds_without_an_address_of_their_own() -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    operator = APIClient()
    operator.force_authenticate(get_user_model().objects.create_user(username="api-operator", is_staff=True))

    gemini = operator.post("/api/providers/", {"name": "gemini", "kind": "gemini", "credential": "k"}, format="json")
    vllm = operator.post("/api/providers/", {"name": "vllm", "kind": "openai"}, format="json")

    assert gemini.status_code == 201, gemini.content
    assert vllm.status_code == 400
    assert vllm.json()["base_url"] == ["This kind of provider needs a base URL."]
