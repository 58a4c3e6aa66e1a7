"""The commands quickstart prints work as pasted, whether or not `portico` is on PATH.

`make quickstart` runs .venv/bin/portico without activating the virtualenv, so
the bare name finds nothing; the last test runs quickstart that way, in a
directory of its own, and pastes the command its banner prints into a shell.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import Demo, instructions, portico_command
from gateway.tests.test_cli import KEY, PORTICO, Running, _free_port

EXPORT = "export PORTICO_KEY=$("


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout whose .venv/bin/portico is the running program, entered as `make` enters it."""
    script = _script(tmp_path / "checkout" / ".venv" / "bin" / "portico")
    monkeypatch.chdir(script.parents[2])
    monkeypatch.setattr(sys, "argv", [".venv/bin/portico", "quickstart"])
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    return script.parents[2]


def test_a_program_not_on_path_is_called_by_its_path_from_here(project: Path):
    assert portico_command() == ".venv/bin/portico"


def test_a_program_on_path_is_called_by_its_name(project: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", os.pathsep.join([str(project / ".venv" / "bin"), "/usr/bin", "/bin"]))

    assert portico_command() == "portico"


def test_another_portico_on_path_is_not_taken_for_this_one(project: Path, monkeypatch: pytest.MonkeyPatch):
    elsewhere = _script(project.parent / "global" / "bin" / "portico")
    monkeypatch.setenv("PATH", os.pathsep.join([str(elsewhere.parent), "/usr/bin", "/bin"]))

    assert portico_command() == ".venv/bin/portico"


def test_from_another_directory_the_path_is_absolute_and_quoted(project: Path, monkeypatch: pytest.MonkeyPatch):
    spaced = project.parent / "my projects"
    spaced.mkdir()
    moved = _script(spaced / "bin" / "portico")
    monkeypatch.setattr(sys, "argv", [str(moved), "quickstart"])
    monkeypatch.chdir(project)

    assert portico_command() == f"'{moved}'"


def test_the_banner_calls_portico_as_it_was_told():
    text = instructions(Demo(None, None), host="127.0.0.1", port=8000, portico=".venv/bin/portico")

    assert "    export PORTICO_KEY=$(.venv/bin/portico createkey --tenant demo --name laptop)" in text


@pytest.fixture
def quickstart() -> Iterator[Callable[[Path, dict[str, str], int], Running]]:
    """Runs `.venv/bin/portico quickstart` in a directory, as `make quickstart` does; stopped at the end."""
    started: list[Running] = []

    def start(project: Path, env: dict[str, str], port: int) -> Running:
        started.append(Running(["quickstart", "--port", str(port)], env, project, ".venv/bin/portico"))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def _venv_of_this_test_run(project: Path) -> None:
    """`project/.venv`, standing for the one Makefile makes: a link to the virtualenv running these tests."""
    (project / ".venv").symlink_to(PORTICO.parents[1], target_is_directory=True)


@pytest.mark.integration
def test_the_printed_createkey_command_puts_a_working_key_in_the_shell(tmp_path: Path, quickstart):
    project = tmp_path / "checkout"
    project.mkdir()
    _venv_of_this_test_run(project)
    # As a new terminal has it: no virtualenv on PATH, the data directory at its default (./.portico).
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORTICO_DATA_DIR"}}
    env.update(PATH=os.pathsep.join(["/usr/bin", "/bin"]), PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    port = _free_port()
    first = quickstart(project, env, port)
    first.wait_for("Application startup complete")
    first.stop()

    again = quickstart(project, env, port)
    banner = again.wait_for("Application startup complete")
    [line] = [line.strip() for line in banner.splitlines() if line.strip().startswith(EXPORT)]
    shell = subprocess.run(
        ["bash", "-c", f'{line}\nprintf "%s" "$PORTICO_KEY"'], cwd=project, env=env, capture_output=True, text=True
    )

    assert line == "export PORTICO_KEY=$(.venv/bin/portico createkey --tenant demo --name laptop)"
    assert shell.returncode == 0, shell.stderr
    assert KEY.fullmatch(shell.stdout), (shell.stdout, shell.stderr)
    listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {shell.stdout}"})
    assert listed.status_code == 200
    assert "mock-echo" in [model["id"] for model in listed.json()["data"]]
