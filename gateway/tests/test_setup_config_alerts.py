"""Alert channels in `portico config export` and `apply`: the signing secret a ${ENV_VAR} reference, never a value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from notifications.models import AlertChannel, AlertEvent
from notifications.services import alert_channel_save
from providers.credentials import decrypt_credential
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "a webhook signing secret, long enough"


def export() -> str:
    out = io.StringIO()
    call_command("config", "export", stdout=out)
    return out.getvalue()


def apply(tmp_path: Path, text: str, *options: str) -> str:
    path = tmp_path / "portico.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("config", "apply", str(path), *options, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def channels(tenant: Tenant) -> dict[str, AlertChannel]:
    webhook = AlertChannel(
        name="ops",
        kind=AlertChannel.Kind.WEBHOOK,
        url="https://hooks.example.com/portico",
        events=[AlertEvent.BUDGET_HARD, AlertEvent.BUDGET_SOFT],
    )
    email = AlertChannel(
        name="finance",
        tenant=tenant,
        kind=AlertChannel.Kind.EMAIL,
        emails=["b@example.com", "a@example.com"],
        events=[AlertEvent.BUDGET_SOFT],
    )
    return {
        "ops": alert_channel_save(channel=webhook, secret=SIGNING_SECRET),
        "finance": alert_channel_save(channel=email),
    }


def test_export_writes_every_channel_with_its_secret_as_a_reference(channels, tenant):
    text = export()

    assert SIGNING_SECRET not in text
    written = yaml.safe_load(text)["alert_channels"]
    assert written == [
        {
            "name": "finance",
            "tenant": tenant.slug,
            "kind": "email",
            "emails": ["a@example.com", "b@example.com"],
            "url": "",
            "secret": "",
            "events": ["budget_soft"],
            "active": True,
        },
        {
            "name": "ops",
            "tenant": None,
            "kind": "webhook",
            "emails": [],
            "url": "https://hooks.example.com/portico",
            "secret": "${PORTICO_ALERT_OPS_SECRET}",
            "events": ["budget_soft", "budget_hard"],
            "active": True,
        },
    ]


def test_applying_what_was_exported_changes_nothing(channels, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTICO_ALERT_OPS_SECRET", SIGNING_SECRET)
    text = export()

    said = apply(tmp_path, text)

    assert said == "No changes: the database matches the file.\n"
    assert export() == text


def test_a_file_makes_changes_and_retires_channels_through_the_services(channels, tenant, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTICO_ALERT_OPS_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("PORTICO_ALERT_PAGER_SECRET", "the pager's own signing secret")
    document = yaml.safe_load(export())
    document["alert_channels"] = [
        entry | {"events": ["budget_hard"]} for entry in document["alert_channels"] if entry["name"] == "ops"
    ] + [
        {
            "name": "pager",
            "tenant": tenant.slug,
            "kind": "webhook",
            "url": "https://pager.example.com/in",
            "secret": "${PORTICO_ALERT_PAGER_SECRET}",
            "events": ["budget_soft", "budget_hard"],
        }
    ]
    text = yaml.safe_dump(document, sort_keys=False)

    kept = apply(tmp_path, text)
    assert AlertChannel.objects.get(name="finance").active  # left out: kept without --prune
    assert "finance" in kept

    apply(tmp_path, text, "--prune")

    ops = AlertChannel.objects.get(name="ops")
    pager = AlertChannel.objects.get(name="pager")
    assert ops.events == ["budget_hard"]
    assert decrypt_credential(ops.secret_encrypted) == SIGNING_SECRET
    assert (pager.tenant, pager.url) == (tenant, "https://pager.example.com/in")
    assert decrypt_credential(pager.secret_encrypted) == "the pager's own signing secret"
    assert not AlertChannel.objects.get(name="finance").active  # retired: deactivated, its deliveries kept
    assert "the pager's own signing secret" not in export()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"name": "x", "tenant": "nobody", "kind": "email", "emails": ["a@example.com"], "events": ["budget_soft"]},
            'alert_channels[0].tenant: unknown tenant "nobody"',
        ),
        (
            {"name": "x", "kind": "webhook", "url": "https://h.example.com", "events": ["budget_soft"]},
            "alert_channels[0].secret: A webhook channel needs a signing secret of at least 16 characters.",
        ),
        (
            {"name": "x", "kind": "email", "emails": ["not an address"], "events": ["budget_soft"]},
            "alert_channels[0].emails: Not an email address: 'not an address'.",
        ),
    ],
    ids=["unknown tenant", "webhook without a secret", "bad address"],
)
def test_a_channel_the_console_would_refuse_is_refused_at_its_place(tmp_path, entry, problem):
    with pytest.raises(CommandError) as refused:
        apply(tmp_path, yaml.safe_dump({"version": 1, "alert_channels": [entry]}))

    assert problem in str(refused.value)
    assert not AlertChannel.objects.exists()
