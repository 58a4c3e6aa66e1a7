"""Reading the report pages back in tests: their tables as rows of cell texts, and what their CSP forbids."""

from __future__ import annotations

from html.parser import HTMLParser

from billing.money import format_money
from billing.report_values import TenantReport


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.styled: list[str] = []
        self._cell: list[str] | None = None
        self._depth = 0  # cells may hold markup (links, forms): their text is gathered whole
        self._skip = 0  # svg, which charts are, holds text that is not the table's

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "style" in named or (tag == "script" and "src" not in named):
            self.styled.append(tag)
        if tag == "svg":
            self._skip += 1
        elif tag == "table":
            self.tables.append(((named.get("class") or "").split(" ")[0], []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "meter" and self._cell is not None:
            self._skip += 1  # its fallback text repeats the figure beside it

    def handle_endtag(self, tag: str) -> None:
        if tag in ("svg", "meter") and self._skip:
            self._skip -= 1
        elif tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._skip:
            self._cell.append(data)


def tables(html: str) -> list[tuple[str, list[list[str]]]]:
    """Each table of the page, in order, as (its first class, its rows of cell texts, header row first)."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def table(html: str, name: str) -> list[list[str]]:
    """The rows of the one table of class `name`, header row left out."""
    [rows] = [rows for found, rows in tables(html) if found == name]
    return rows[1:]


def inline_style_or_script(html: str) -> list[str]:
    """Tags with a style attribute or an inline script: the pages keep both in static files."""
    parser = _Tables()
    parser.feed(html)
    return parser.styled


def report_tables(report: TenantReport) -> dict[str, list[list[str]]]:
    """A tenant report's tables as its page must print them, in the console and in the portal alike."""
    return {
        "days-by-model": [
            [
                line.day.isoformat(),
                line.model,
                f"{line.requests:,}",
                f"{line.prompt_tokens:,}",
                f"{line.cached_tokens:,}",
                f"{line.cache_creation_tokens:,}",
                f"{line.completion_tokens:,}",
                f"{line.reasoning_tokens:,}",
                format_money(line.cost),
            ]
            for line in report.days
        ],
        "keys": [
            [
                key.name or "—",
                key.prefix or "—",
                f"{key.totals.requests:,}",
                f"{key.totals.errors:,}",
                f"{key.totals.prompt_tokens:,}",
                f"{key.totals.completion_tokens:,}",
                format_money(key.totals.cost),
            ]
            for key in report.keys
        ],
        "errors": [[error.error_class, f"{error.count:,}", f"{error.share:.1%}"] for error in report.errors],
    }
