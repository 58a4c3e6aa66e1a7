"""PORTICO_PASSWORD_HASHERS: Django's list unless set, and the list it names when set, read as a fresh process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import global_settings

PROJECT = Path(__file__).resolve().parents[2]
READ = "import json, gateway.settings as settings; print(json.dumps(settings.PASSWORD_HASHERS))"


def hashers_read_with(value: str | None) -> list[str]:
    env = {name: text for name, text in os.environ.items() if name != "PORTICO_PASSWORD_HASHERS"}
    if value is not None:
        env["PORTICO_PASSWORD_HASHERS"] = value
    done = subprocess.run(
        [sys.executable, "-c", READ], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_unset_it_is_djangos_own_list() -> None:
    assert hashers_read_with(None) == global_settings.PASSWORD_HASHERS


def test_set_it_is_the_list_it_names_in_order() -> None:
    named = "django.contrib.auth.hashers.ScryptPasswordHasher, django.contrib.auth.hashers.PBKDF2PasswordHasher"

    assert hashers_read_with(named) == [
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
