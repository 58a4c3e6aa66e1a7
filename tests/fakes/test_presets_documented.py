"""The preset table in docs/provider-kinds.md says what the tested presets are, server for server."""

from __future__ import annotations

from tests.fakes.presets import PRESETS
from tests.servers import PROJECT_ROOT

HEADER = "| server | base URL | `accepts_stream_options` | `accepts_max_completion_tokens` | `serves_completions` |"


def documented_rows() -> list[tuple[str, ...]]:
    lines = (PROJECT_ROOT / "docs" / "provider-kinds.md").read_text(encoding="utf-8").splitlines()
    start = next(number for number, line in enumerate(lines) if line.startswith(HEADER))
    rows = []
    for line in lines[start + 2 :]:  # past the header and its rule
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip().strip("`") for cell in line.strip("|").split("|")))
    return rows


def test_the_documented_presets_are_the_tested_ones() -> None:
    def said(flag: bool) -> str:
        return "on" if flag else "off"

    tested = [
        (preset.server, preset.base_url, *(said(value) for value in preset.flags().values())) for preset in PRESETS
    ]

    assert documented_rows() == tested
