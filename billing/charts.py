"""Charts for the report pages, drawn on the server as inline SVG: no script, nothing fetched from elsewhere.

    bar_chart(bars)        horizontal bars, one a label: spend per tenant, p95 latency per provider…
    stacked_bars(stacks)   a column a day, stacked by series: a tenant's daily spend and tokens per model

Each is a pure function: values in, markup out, every label and printed value
escaped. Colours are SVG presentation attributes, never `style`, so the pages
keep to their Content-Security-Policy and need no stylesheet to read. A chart
never stands alone: its page prints the same numbers in a table, and the
values a chart prints come already formatted (`shown`), money by
`billing.money.format_money`. With nothing to draw, a chart is a sentence
saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

EMPTY = "Nothing to show for this period."
# Told apart in order; a chart with more series than colours merges the rest first (see report_pages).
PALETTE = ("#2457c5", "#e07b39", "#3a9e5c", "#b3261e", "#7a4fc4", "#2a9fb0", "#c4a32b", "#6b7280")
WIDTH = 640
FONT = 12
_LABEL_CHARS = 28
# bar_chart: label column, printed value column, and each row's height and bar thickness.
_LABELS, _VALUES, _ROW, _BAR = 200, 110, 22, 14
# stacked_bars: the plot's height, the y axis labels' column, the x labels' row.
_PLOT, _AXIS, _XLABELS, _TOP = 180, 90, 20, 12
_LEGEND_ITEM, _LEGEND_ROW = 160, 18


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float  # its length; below zero draws as none
    shown: str  # the value as printed beside it


@dataclass(frozen=True, slots=True)
class Segment:
    series: str
    value: float
    shown: str


@dataclass(frozen=True, slots=True)
class Stack:
    label: str  # under the column
    segments: tuple[Segment, ...]
    shown: str  # the column's total as printed


def _n(value: float) -> str:
    return f"{value:.1f}"


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _length(value: float, top: float, span: float) -> float:
    return span * value / top if value > 0 and top > 0 else 0.0


def _empty(message: str) -> SafeString:
    return format_html('<p class="chart-empty">{}</p>', message)


def _svg(title: str, height: float, body: SafeString, kind: str) -> SafeString:
    return format_html(
        '<svg class="chart chart-{}" role="img" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" '
        'width="{}" height="{}" font-family="system-ui, sans-serif" font-size="{}" fill="#1d2430">'
        "<title>{}</title>{}</svg>",
        kind,
        WIDTH,
        _n(height),
        WIDTH,
        _n(height),
        FONT,
        title,
        body,
    )


def bar_chart(bars: Sequence[Bar], *, title: str, empty: str = EMPTY) -> SafeString:
    """A horizontal bar per entry, in the order given, scaled to the largest."""
    if not bars:
        return _empty(empty)
    top = max(bar.value for bar in bars)
    span = WIDTH - _LABELS - _VALUES
    rows = []
    for index, bar in enumerate(bars):
        y = _TOP + index * _ROW
        length = _length(bar.value, top, span)
        rows.append(
            (
                bar.label,
                bar.shown,
                _LABELS - 8,
                _n(y + _BAR - 3),
                _short(bar.label),
                _LABELS,
                _n(y),
                _n(length),
                _BAR,
                PALETTE[0],
                _n(_LABELS + length + 6),
                _n(y + _BAR - 3),
                bar.shown,
            )
        )
    body = format_html_join(
        "",
        '<g class="row"><title>{}: {}</title><text x="{}" y="{}" text-anchor="end">{}</text>'
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"/><text x="{}" y="{}">{}</text></g>',
        rows,
    )
    return _svg(title, _TOP * 2 + len(bars) * _ROW, body, "bars")


def _series(stacks: Sequence[Stack]) -> list[str]:
    return list(dict.fromkeys(segment.series for stack in stacks for segment in stack.segments))


def _x_labels(labels: Sequence[str], left: float, step: float) -> SafeString:
    """Every label under a short axis; every k-th under a long one, so they do not run together."""
    every = max(1, math.ceil(len(labels) / 12))
    placed = [
        (_n(left + step * (index + 0.5)), _n(_TOP + _PLOT + 14), label)
        for index, label in enumerate(labels)
        if index % every == 0
    ]
    return format_html_join("", '<text x="{}" y="{}" text-anchor="middle">{}</text>', placed)


def _y_axis(top_shown: str) -> SafeString:
    baseline = _TOP + _PLOT
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#d9dee7"/>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#5b6678"/>'
        '<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text>',
        _AXIS,
        _TOP,
        WIDTH,
        _TOP,
        _AXIS,
        baseline,
        WIDTH,
        baseline,
        _AXIS - 6,
        _TOP + 4,
        top_shown,
        _AXIS - 6,
        baseline + 4,
    )


def _legend(series: Sequence[str], colours: dict[str, str], y: float) -> SafeString:
    per_row = max(1, WIDTH // _LEGEND_ITEM)
    items = [
        (
            _n((index % per_row) * _LEGEND_ITEM),
            _n(y + (index // per_row) * _LEGEND_ROW),
            colours[name],
            _n((index % per_row) * _LEGEND_ITEM + 16),
            _n(y + (index // per_row) * _LEGEND_ROW + 10),
            _short(name),
        )
        for index, name in enumerate(series)
    ]
    return format_html_join(
        "",
        '<g class="legend"><rect x="{}" y="{}" width="11" height="11" fill="{}"/><text x="{}" y="{}">{}</text></g>',
        items,
    )


def stacked_bars(stacks: Sequence[Stack], *, title: str, empty: str = EMPTY, series: Sequence[str] = ()) -> SafeString:
    """A column per stack, its segments piled in series order, each series one colour, with a legend below.

    `series` orders the colours, so that charts given the same one colour each series alike; by default the
    series take them in the order they first appear. The legend names the series drawn, in that order.
    """
    if not stacks or not any(segment.value > 0 for stack in stacks for segment in stack.segments):
        return _empty(empty)
    drawn = _series(stacks)
    ordered = list(dict.fromkeys([*series, *drawn]))
    colours = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(ordered)}
    series = [name for name in ordered if name in drawn]
    totals = [sum(max(segment.value, 0) for segment in stack.segments) for stack in stacks]
    top = max(totals)
    step = (WIDTH - _AXIS) / len(stacks)
    width = max(step * 0.7, 1.0)
    columns = []
    for index, stack in enumerate(stacks):
        x = _AXIS + step * index + (step - width) / 2
        base = float(_TOP + _PLOT)
        parts = []
        for segment in stack.segments:
            height = _length(segment.value, top, _PLOT)
            if height == 0:
                continue
            base -= height
            colour = colours[segment.series]
            parts.append((_n(x), _n(base), _n(width), _n(height), colour, stack.label, segment.series, segment.shown))
        drawn = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} · {}: {}</title></rect>',
            parts,
        )
        columns.append(format_html('<g class="column"><title>{}: {}</title>{}</g>', stack.label, stack.shown, drawn))
    legend_top = _TOP + _PLOT + _XLABELS + 8
    legend_rows = math.ceil(len(series) / max(1, WIDTH // _LEGEND_ITEM))
    body = format_html(
        "{}{}{}{}",
        _y_axis(stacks[totals.index(top)].shown),
        format_html_join("", "{}", ((column,) for column in columns)),
        _x_labels([stack.label for stack in stacks], _AXIS, step),
        _legend(series, colours, legend_top),
    )
    return _svg(title, legend_top + legend_rows * _LEGEND_ROW, body, "stacked")
