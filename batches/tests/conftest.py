from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def files_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test's files in a directory of its own."""
    settings.PORTICO_FILES_DIR = str(tmp_path / "files")
    return tmp_path / "files"
