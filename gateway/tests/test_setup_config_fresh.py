"""A setup moves to a new database: exported from this one, applied by `portico` to an empty one, exported again.

The second database is SQLite, in another process, reached through the
`portico` command's passthrough to Django: nothing is shared with the first but
the file and the environment's secrets.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from gateway.tests.setup_config_factories import SECRETS, make_setup

PORTICO = Path(sys.executable).with_name("portico")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    make_setup()


def test_an_empty_database_applied_from_an_export_exports_the_same_file(setup, tmp_path):
    out = io.StringIO()
    call_command("config", "export", stdout=out)
    (tmp_path / "portico.yaml").write_text(out.getvalue())
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "PORTICO_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }

    def portico(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PORTICO), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )

    migrated = portico("migrate", "--verbosity", "0")
    applied = portico("config", "apply", "portico.yaml")
    exported = portico("config", "export")

    assert migrated.returncode == 0, migrated.stderr
    assert applied.returncode == 0, applied.stderr
    assert "  + openai-prod\n" in applied.stdout
    assert applied.stdout.endswith("Applied.\n")
    assert exported.stdout == out.getvalue()
    again = portico("config", "apply", "portico.yaml")
    assert again.stdout == "No changes: the database matches the file.\n"
