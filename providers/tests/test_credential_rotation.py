"""Rotating PORTICO_CREDENTIAL_KEY: the new key in front, every stored secret re-encrypted, the old key dropped.

The alert channels and the audit log belong to apps above this one: they are reached
through the app registry, and the command through the installed `portico`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from providers import credentials
from providers.credentials import (
    CredentialUnreadable,
    RotationProgress,
    credential_keys,
    credentials_rotate,
    decrypt_credential,
    decrypt_headers,
    encrypt_credential,
    is_under_first_key,
)
from providers.facade import load_models
from providers.models import ModelListSource, Provider
from providers.tests.factories import make_provider, make_route

OLD, NEW = "the-old-credential-key", "the-new-credential-key"
BOTH = f"{NEW},{OLD}"


# --- the setting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "keys"),
    [
        ("one-key", ("one-key",)),
        (" new-key , old-key ,", ("new-key", "old-key")),
        (["new-key", "old-key"], ("new-key", "old-key")),
    ],
)
def test_the_setting_holds_one_key_or_several(setting: str | list[str], keys: tuple[str, ...]) -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY=setting):
        assert credential_keys() == keys


def test_the_default_secret_key_is_one_key_even_with_commas_in_it() -> None:
    with override_settings(SECRET_KEY="abc,def", PORTICO_CREDENTIAL_KEY="abc,def"):
        assert credential_keys() == ("abc,def",)


def test_a_setting_without_a_key_is_refused() -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY=" , "), pytest.raises(ImproperlyConfigured):
        credential_keys()


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY=OLD):
        old_token = encrypt_credential("sk-old")
    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH):
        new_token = encrypt_credential("sk-new")
        assert (decrypt_credential(old_token), decrypt_credential(new_token)) == ("sk-old", "sk-new")
        assert (is_under_first_key(old_token), is_under_first_key(new_token)) == (False, True)
    with override_settings(PORTICO_CREDENTIAL_KEY=NEW):
        assert decrypt_credential(new_token) == "sk-new"
        with pytest.raises(CredentialUnreadable):
            decrypt_credential(old_token)


# --- the rotation ---------------------------------------------------------------------------------------------


def _alert_channel(secret: str) -> Any:
    channel_model = apps.get_model("notifications", "AlertChannel")
    return channel_model.objects.create(
        name="ops", kind="webhook", url="https://hooks.example.test/x", secret_encrypted=encrypt_credential(secret)
    )


OldSecrets = tuple[list[Provider], ModelListSource, Any]


@pytest.fixture
def old_secrets(db: None) -> OldSecrets:
    """Rows of every kind that holds a secret, written while the old key was the only one."""
    with override_settings(PORTICO_CREDENTIAL_KEY=OLD):
        providers = [
            make_provider(
                kind="openai",
                base_url="http://upstream.test/v1",
                name=f"p{index}",
                credential=f"sk-{index}",
                extra_headers={"X-Org": f"org-{index}"},
            )
            for index in range(5)
        ]
        make_provider(kind="mock", name="no-secret")
        source = ModelListSource.objects.create(
            name="list", url="https://lists.test/models.json", credential_encrypted=encrypt_credential("sk-list")
        )
        channel = _alert_channel("whsec-1")
    for index, provider in enumerate(providers):
        make_route(provider=provider, public_id=f"model-{index}")
    return providers, source, channel


def rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_credential_key", *args, stdout=out)
    return out.getvalue()


def test_after_rotation_every_secret_decrypts_with_the_new_key_alone(old_secrets: OldSecrets) -> None:
    providers, source, channel = old_secrets

    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH):
        out = rotate("--batch-size", "2")

    assert "Rotated 7 row(s); 8 checked." in out
    assert "providers.Provider: 2 checked" in out  # progress, a batch at a time
    with override_settings(PORTICO_CREDENTIAL_KEY=NEW):
        for index, provider in enumerate(providers):
            stored = Provider.objects.get(pk=provider.pk)
            assert decrypt_credential(stored.credential_encrypted) == f"sk-{index}"
            assert decrypt_headers(stored.extra_headers_encrypted) == {"X-Org": f"org-{index}"}
        assert decrypt_credential(ModelListSource.objects.get(pk=source.pk).credential_encrypted) == "sk-list"
        assert decrypt_credential(type(channel).objects.get(pk=channel.pk).secret_encrypted) == "whsec-1"
        assert set(load_models()) == {f"model-{index}" for index in range(5)}


def test_a_second_run_finds_nothing_to_rotate(old_secrets: OldSecrets) -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH):
        rotate()
        stored = list(Provider.objects.order_by("pk").values_list("credential_encrypted", flat=True))

        out = rotate()

    assert "Rotated 0 row(s)" in out
    assert list(Provider.objects.order_by("pk").values_list("credential_encrypted", flat=True)) == stored


def test_the_snapshot_builds_with_every_credential_while_rotation_is_half_done(old_secrets: OldSecrets) -> None:
    providers, _source, _channel = old_secrets
    seen: list[dict[str, str]] = []
    rotated_so_far: list[int] = []

    def build_snapshot(progress: RotationProgress) -> None:
        if progress.label == "providers.Provider":
            models = load_models()
            seen.append({public_id: model.routes[0].provider.credential for public_id, model in models.items()})
            tokens = Provider.objects.exclude(credential_encrypted="").values_list("credential_encrypted", flat=True)
            rotated_so_far.append(sum(is_under_first_key(token) for token in tokens))

    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH):
        credentials_rotate(batch_size=2, on_batch=build_snapshot)

    expected = {f"model-{index}": f"sk-{index}" for index in range(5)}
    assert seen == [expected] * 3  # after each batch of 2 providers (the mock has no credential)
    assert rotated_so_far == [2, 4, 5]  # old and new tokens side by side until the last batch


def test_a_secret_no_key_opens_is_left_and_reported(old_secrets: OldSecrets) -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY="a-key-long-gone"):
        stray = make_provider(kind="openai", base_url="http://x.test/v1", name="stray", credential="sk-stray")

    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH), pytest.raises(CommandError, match="1 row"):
        rotate()

    assert Provider.objects.get(pk=stray.pk).credential_encrypted == stray.credential_encrypted
    with override_settings(PORTICO_CREDENTIAL_KEY=NEW):
        assert decrypt_credential(Provider.objects.get(name="p0").credential_encrypted) == "sk-0"


def test_a_row_saved_since_the_rotation_read_it_keeps_the_new_value(
    old_secrets: OldSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers, _source, _channel = old_secrets
    target = providers[0]
    real_reencrypt = credentials.reencrypt
    entered: list[str] = []

    def operator_saves_first(token: str) -> str:
        # An operator saves a new credential (under the first key) between the rotation's read and its write.
        if not entered:
            entered.append(encrypt_credential("sk-entered-meanwhile"))
            Provider.objects.filter(pk=target.pk).update(credential_encrypted=entered[0])
        return real_reencrypt(token)

    monkeypatch.setattr(credentials, "reencrypt", operator_saves_first)
    with override_settings(PORTICO_CREDENTIAL_KEY=BOTH):
        credentials_rotate(batch_size=10)
        stored = Provider.objects.get(pk=target.pk)

    assert stored.credential_encrypted == entered[0]
    with override_settings(PORTICO_CREDENTIAL_KEY=NEW):
        assert decrypt_credential(stored.credential_encrypted) == "sk-entered-meanwhile"
        assert decrypt_headers(stored.extra_headers_encrypted) == {"X-Org": "org-0"}


# --- through the command line, audited ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_portico_rotate_credential_key_is_recorded_in_the_audit_log() -> None:
    with override_settings(PORTICO_CREDENTIAL_KEY=OLD):
        provider = make_provider(kind="openai", base_url="http://x.test/v1", name="audited", credential="sk-audited")
    url = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}")
    env = {**os.environ, "DATABASE_URL": urlunsplit(url), "PORTICO_CREDENTIAL_KEY": BOTH}
    portico = str(Path(sys.executable).with_name("portico"))

    done = subprocess.run(
        [portico, "rotate-credential-key"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "Rotated 1 row(s)" in done.stdout
    entry = apps.get_model("audit", "AuditEntry").objects.get()
    assert (entry.action, entry.actor_kind, entry.origin) == ("rotate_key", "cli", "cli")
    assert (entry.model_label, entry.object_id, entry.object_repr) == (
        "providers.provider",
        str(provider.pk),
        "audited",
    )
    assert entry.before == entry.after == {"credential_encrypted": "[redacted]"}
    with override_settings(PORTICO_CREDENTIAL_KEY=NEW):
        assert decrypt_credential(Provider.objects.get(pk=provider.pk).credential_encrypted) == "sk-audited"
