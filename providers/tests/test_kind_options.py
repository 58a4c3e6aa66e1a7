"""A kind's own settings (`Provider.options`): validated by the kind, refused when unknown, carried to the hot path.

The same validator answers in the admin, the management API and setup as code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from providers.adapters import adapter_for
from providers.adapters.kind_options import InvalidOptions
from providers.facade import provider_info
from providers.models import Provider
from providers.tests.factories import make_provider

SERVES = {"serves_responses": True}


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("openai", {"serves_response": True}, "Unknown option(s) for OpenAI or OpenAI-compatible: serves_response"),
        ("openai", {"serves_responses": "yes"}, "'serves_responses' must be true or false, not a string"),
        ("openai", ["serves_responses"], "Options must be a JSON object"),
        ("azure", SERVES, "Unknown option(s) for Azure OpenAI: serves_responses. Known: none."),
        ("anthropic", SERVES, "Unknown option(s) for Anthropic"),
        ("ollama", SERVES, "Unknown option(s) for Ollama"),
        ("mock", SERVES, "Unknown option(s) for Mock"),
    ],
)
def test_each_kind_refuses_options_it_does_not_have(kind: str, options: Any, message: str) -> None:
    with pytest.raises(InvalidOptions) as refused:
        adapter_for(kind).clean_options(options)

    assert message in str(refused.value)


@pytest.mark.parametrize(("options", "stored"), [(SERVES, SERVES), ({}, {}), (None, {})])
def test_the_openai_kind_keeps_the_options_it_has(options: Any, stored: dict[str, Any]) -> None:
    assert adapter_for("openai").clean_options(options) == stored


@pytest.mark.django_db
def test_the_hot_path_reads_every_option_of_the_kind_with_its_default() -> None:
    declared = make_provider(kind="openai", base_url="http://a.test/v1", options=SERVES)
    silent = make_provider(kind="openai", base_url="http://b.test/v1")
    mock = make_provider(kind="mock")

    assert provider_info(declared).options == {"serves_responses": True}
    assert provider_info(silent).options == {"serves_responses": False}
    assert provider_info(mock).options == {}


@pytest.mark.django_db
def test_a_row_with_an_unknown_option_does_not_validate() -> None:
    provider = Provider(name="vllm", kind="openai", base_url="http://vllm.test/v1", options={"region": "eu"})

    with pytest.raises(ValidationError) as refused:
        provider.full_clean()

    assert "region" in refused.value.message_dict["options"][0]


def _form(**fields: str) -> dict[str, str]:
    data = {
        "name": "vllm",
        "kind": "openai",
        "base_url": "http://vllm.test/v1",
        "credential": "",
        "connect_timeout": "5",
        "read_timeout": "120",
        "total_timeout": "600",
        "extra_headers": "{}",
        "options": "{}",
        "active": "on",
    }
    return {**data, **fields}


@pytest.mark.django_db
def test_the_admin_stores_known_options_and_shows_them(admin_client: Any) -> None:
    admin_client.post(reverse("admin:providers_provider_add"), _form(options='{"serves_responses": true}'))
    provider = Provider.objects.get(name="vllm")

    page = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk])).content.decode()

    assert provider.options == SERVES
    assert "serves_responses" in page
    assert "Kind options" in page


@pytest.mark.django_db
def test_the_admin_refuses_an_unknown_option_with_its_name(admin_client: Any) -> None:
    response = admin_client.post(reverse("admin:providers_provider_add"), _form(options='{"region": "eu"}'))

    assert response.status_code == 200  # the form again, with the error
    assert "Unknown option(s) for OpenAI or OpenAI-compatible: region" in response.content.decode()
    assert not Provider.objects.filter(name="vllm").exists()


@pytest.fixture
def operator() -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user(username="operator", is_staff=True))
    return client


@pytest.mark.django_db
def test_the_management_api_takes_shows_and_refuses_options(operator: APIClient) -> None:
    body = {"name": "vllm", "kind": "openai", "base_url": "http://vllm.test/v1"}

    created = operator.post("/api/providers/", {**body, "options": SERVES}, format="json")
    refused = operator.post("/api/providers/", {**body, "name": "other", "options": {"region": "eu"}}, format="json")
    moved = operator.patch(f"/api/providers/{created.json()['id']}/", {"kind": "azure"}, format="json")

    assert (created.status_code, created.json()["options"]) == (201, SERVES)
    assert refused.status_code == 400
    assert "Unknown option(s) for OpenAI or OpenAI-compatible: region" in str(refused.json()["options"])
    # The options belong to the kind: a provider that changes kind must drop the ones the new kind lacks.
    assert moved.status_code == 400
    assert "serves_responses" in str(moved.json()["options"])


def _apply(tmp_path: Path, providers: list[dict[str, Any]]) -> str:
    path = tmp_path / "portico.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "providers": providers}))
    out = io.StringIO()
    call_command("config", "apply", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_setup_as_code_applies_exports_and_refuses_options(tmp_path: Path) -> None:
    entry = {"name": "vllm", "kind": "openai", "base_url": "http://vllm.test/v1"}

    _apply(tmp_path, [{**entry, "options": SERVES}])
    out = io.StringIO()
    call_command("config", "export", stdout=out)
    with pytest.raises(CommandError) as refused:
        _apply(tmp_path, [{**entry, "options": {"serves_responses": True, "region": "eu"}}])

    (exported,) = yaml.safe_load(out.getvalue())["providers"]
    assert exported["options"] == SERVES
    assert "providers[0].options: Unknown option(s) for OpenAI or OpenAI-compatible: region" in str(refused.value)
    assert Provider.objects.get(name="vllm").options == SERVES


@pytest.mark.django_db
def test_the_admin_stores_no_options_when_the_field_is_left_empty(admin_client: Any) -> None:
    admin_client.post(reverse("admin:providers_provider_add"), _form(options=""))

    assert Provider.objects.get(name="vllm").options == {}
