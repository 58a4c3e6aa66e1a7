"""Provider credentials at rest, and the frozen provider and route values built from them.

`load_models()` lives in providers/facade.py; it is tested here because what it
does beyond filtering is decrypt each provider's credential exactly once.
"""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from providers.adapters.mock import MOCK_BASE_URL
from providers.credentials import CredentialUnreadable, decrypt_credential, encrypt_credential
from providers.facade import RouteInfo, load_models, provider_info
from providers.models import Provider
from providers.tests.factories import make_provider, make_route

CREDENTIAL = "sk-proj-UPSTREAMsecret1234567890"


def test_a_credential_survives_the_round_trip() -> None:
    assert decrypt_credential(encrypt_credential(CREDENTIAL)) == CREDENTIAL


def test_the_stored_form_does_not_contain_the_credential() -> None:
    token = encrypt_credential(CREDENTIAL)

    assert token != CREDENTIAL
    assert CREDENTIAL not in token
    assert "UPSTREAMsecret" not in token


def test_each_encryption_differs() -> None:
    # Fernet adds a random IV: equal credentials cannot be spotted in a dump.
    assert encrypt_credential(CREDENTIAL) != encrypt_credential(CREDENTIAL)


def test_no_credential_stays_empty() -> None:
    assert encrypt_credential("") == ""
    assert decrypt_credential("") == ""


def test_a_credential_encrypted_under_another_key_is_unreadable() -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY="the-old-credential-key"):
        token = encrypt_credential(CREDENTIAL)

    with override_settings(PORTICO_CREDENTIAL_KEY="the-new-credential-key"):
        with pytest.raises(CredentialUnreadable) as caught:
            decrypt_credential(token)

    assert CREDENTIAL not in str(caught.value)
    assert caught.value.__cause__ is None  # `from None`: no token in the traceback chain


def test_a_token_that_is_not_fernet_is_unreadable() -> None:
    with pytest.raises(CredentialUnreadable):
        decrypt_credential("not-a-fernet-token")


def first_route(public_id: str) -> RouteInfo:
    return load_models()[public_id].routes[0]


@pytest.mark.django_db
def test_it_loads_every_active_route_of_an_active_provider() -> None:
    live = make_provider(kind="openai", base_url="http://127.0.0.1:9/v1", name="live")
    make_route(provider=live, public_id="served")
    make_route(provider=live, public_id="switched-off", active=False)
    make_route(provider=make_provider(name="retired", active=False), public_id="of-a-retired-provider")

    assert set(load_models()) == {"served"}


@pytest.mark.django_db
def test_a_route_carries_its_metadata_and_capabilities() -> None:
    route = make_route(
        provider=make_provider(kind="openai", base_url="http://127.0.0.1:9/v1"),
        public_id="house-model",
        upstream_model="gpt-4o-2024-08-06",
        owned_by="acme-ai",
        context_window=128_000,
        max_output_tokens=16_384,
        supports_tools=False,
        supports_vision=True,
    )

    info = first_route("house-model")

    assert (info.public_id, info.upstream_model, info.owned_by) == ("house-model", "gpt-4o-2024-08-06", "acme-ai")
    assert (info.context_window, info.max_output_tokens) == (128_000, 16_384)
    assert info.capabilities == frozenset({"chat", "streaming", "vision", "json_mode"})
    assert info.created == int(route.created_at.timestamp())


@pytest.mark.django_db
def test_the_mock_provider_gets_the_mock_base_url() -> None:
    make_route(provider=make_provider(kind="mock", base_url=""), public_id="mock-echo")

    provider = first_route("mock-echo").provider

    assert provider.base_url == MOCK_BASE_URL
    assert provider.kind == "mock"
    assert provider.adapter.kind == "mock"


@pytest.mark.django_db
def test_a_provider_is_decrypted_once_and_shared_by_its_routes() -> None:
    provider = make_provider(
        kind="openai",
        base_url="https://api.example.test/v1/",
        credential=CREDENTIAL,
        extra_headers={"OpenAI-Organization": "org-1"},
        connect_timeout=2.0,
        read_timeout=30.0,
        total_timeout=90.0,
    )
    make_route(provider=provider, public_id="one")
    make_route(provider=provider, public_id="two")

    models = load_models()

    info = models["one"].routes[0].provider
    assert info is models["two"].routes[0].provider
    assert info.base_url == "https://api.example.test/v1"  # the trailing slash is dropped
    assert info.credential == CREDENTIAL
    assert info.extra_headers == {"OpenAI-Organization": "org-1"}
    assert (info.connect_timeout, info.read_timeout, info.total_timeout) == (2.0, 30.0, 90.0)


@pytest.mark.django_db
def test_the_credential_never_shows_in_a_repr() -> None:
    make_route(provider=make_provider(kind="openai", base_url="http://x.test/v1", credential=CREDENTIAL), public_id="m")

    route = first_route("m")

    assert CREDENTIAL not in repr(route.provider)
    assert CREDENTIAL not in repr(route)


@pytest.mark.django_db
def test_a_provider_whose_credential_cannot_be_read_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY="the-old-credential-key"):
        stale = make_provider(kind="openai", base_url="http://x.test/v1", credential=CREDENTIAL, name="stale")
    make_route(provider=stale, public_id="unreadable")
    make_route(provider=make_provider(kind="mock", name="fine"), public_id="readable")

    with caplog.at_level(logging.ERROR, logger="providers.facade"):
        models = load_models()

    assert set(models) == {"readable"}
    assert "stale" in caplog.text
    assert CREDENTIAL not in caplog.text


@pytest.mark.django_db
def test_the_provider_version_changes_when_the_provider_is_saved() -> None:
    provider = make_provider(kind="openai", base_url="http://x.test/v1")
    before = provider_info(provider).version

    provider.read_timeout = 5.0
    provider.save()

    assert provider_info(Provider.objects.get(pk=provider.pk)).version > before
