"""Changes made by `portico <command>`: recorded as cli:<the OS user>, from "cli"."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from audit.models import AuditEntry
from tenants.models import ApiKey, Tenant

# The real `portico` runs in its own process, so what the test made must be committed for it to see.
pytestmark = pytest.mark.django_db(transaction=True)


def portico(*argv: str, check: bool = True) -> str:
    """Run the installed `portico` command on the test database; its stdout."""
    url = urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}")
    env = {**os.environ, "DATABASE_URL": urlunsplit(url)}
    command = [str(Path(sys.executable).with_name("portico")), *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout


def test_portico_createtenant_leaves_one_entry_as_the_os_user_from_the_command_line() -> None:
    portico("createtenant", "--name", "Acme Corp")

    tenant = Tenant.objects.get(slug="acme-corp")
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_kind, entry.actor_user_id) == (f"cli:{getpass.getuser()}", "cli", None)
    assert (entry.origin, entry.remote_addr, entry.source) == ("cli", None, "cli")
    assert (entry.action, entry.model_label, entry.object_id) == ("create", "tenants.tenant", str(tenant.pk))
    assert entry.before is None
    assert entry.after is not None
    assert {entry.after[name] for name in ("name", "slug", "active")} == {"Acme Corp", "acme-corp", True}


def test_the_key_portico_createtenant_prints_is_recorded_without_its_secret() -> None:
    plaintext = portico("createtenant", "--name", "Globex", "--with-key", "ci").strip()

    entry = AuditEntry.objects.get(model_label="tenants.apikey")
    assert entry.after is not None
    assert entry.after["digest"] == "[redacted]"
    assert plaintext not in str(entry.after)
    assert ApiKey.objects.get().digest not in str(entry.after)


def test_a_command_that_fails_records_nothing() -> None:
    portico("createtenant", "--name", "Initech", "--models", "no-such-model", check=False)

    assert not Tenant.objects.exists()
    assert not AuditEntry.objects.exists()
