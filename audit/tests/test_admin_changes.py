"""Changes made in the admin: one entry each, naming the signed-in user and their address, secrets redacted."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from providers.models import Provider
from providers.tests.factories import make_provider

pytestmark = pytest.mark.django_db

CREDENTIAL = "sk-proj-AUDITsecret1234567890"


@pytest.fixture
def operator() -> Client:
    user = get_user_model().objects.create_superuser(username="olivia", password="pw-not-used")
    web = Client(REMOTE_ADDR="198.51.100.23")
    web.force_login(user)
    return web


def _form(provider: Provider, **fields: str) -> dict[str, str]:
    data = {
        "name": provider.name,
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": "",
        "connect_timeout": "5",
        "read_timeout": "120",
        "total_timeout": "600",
        "extra_headers": "",
        "active": "on",
        "accepts_stream_options": "on",
        "accepts_max_completion_tokens": "on",
        "serves_completions": "on",
    }
    return {**data, **fields}


@pytest.fixture
def provider() -> Provider:
    return make_provider(kind="openai", base_url="https://api.openai.com/v1", name="openai", credential="sk-old")


def test_a_provider_changed_in_the_admin_leaves_one_entry_with_its_actor_origin_and_change(
    operator: Client, provider: Provider
) -> None:
    url = reverse("admin:providers_provider_change", args=[provider.pk])

    response = operator.post(url, _form(provider, read_timeout="30"))

    assert response.status_code == 302
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_kind, entry.actor_user_id) == ("olivia", "user", _user_id("olivia"))
    assert (entry.origin, entry.remote_addr, entry.source) == ("admin", "198.51.100.23", "198.51.100.23")
    assert (entry.action, entry.model_label, entry.object_id, entry.object_repr) == (
        "update",
        "providers.provider",
        str(provider.pk),
        "openai",
    )
    assert (entry.before, entry.after) == ({"read_timeout": 120.0}, {"read_timeout": 30.0})


def test_a_new_credential_is_recorded_as_changed_but_never_stored(operator: Client, provider: Provider) -> None:
    operator.post(
        reverse("admin:providers_provider_change", args=[provider.pk]), _form(provider, credential=CREDENTIAL)
    )

    entry = AuditEntry.objects.get()
    stored = Provider.objects.get(pk=provider.pk).credential_encrypted
    assert entry.before == {"credential_encrypted": "[redacted]"}
    assert entry.after == {"credential_encrypted": "[redacted]"}
    row = str(AuditEntry.objects.filter(pk=entry.pk).values().get())
    assert CREDENTIAL not in row
    assert stored not in row


def test_a_provider_added_in_the_admin_is_recorded_whole_with_its_secrets_redacted(operator: Client) -> None:
    response = operator.post(
        reverse("admin:providers_provider_add"),
        _form(Provider(name="groq"), credential=CREDENTIAL, extra_headers='{"X-Org": "org-secret"}'),
    )

    assert response.status_code == 302
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.before) == ("create", None)
    assert entry.after is not None
    assert entry.after["name"] == "groq"
    assert entry.after["credential_encrypted"] == entry.after["extra_headers_encrypted"] == "[redacted]"
    assert "org-secret" not in str(entry.after)


def test_a_provider_deleted_in_the_admin_is_recorded_with_what_it_was(operator: Client) -> None:
    provider = make_provider(kind="mock", name="retired")

    operator.post(reverse("admin:providers_provider_delete", args=[provider.pk]), {"post": "yes"})

    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_repr, entry.after) == ("delete", "retired", None)
    assert entry.before is not None
    assert entry.before["name"] == "retired"


def test_a_save_that_changes_nothing_leaves_no_entry(operator: Client, provider: Provider) -> None:
    operator.post(reverse("admin:providers_provider_change", args=[provider.pk]), _form(provider))

    assert not AuditEntry.objects.exists()


def test_changes_outside_the_admin_the_api_and_the_command_line_are_not_recorded() -> None:
    provider = make_provider(kind="mock", name="made-by-a-job")
    provider.active = False
    provider.save()

    assert not AuditEntry.objects.exists()


def _user_id(username: str) -> int:
    return get_user_model().objects.get(username=username).pk
