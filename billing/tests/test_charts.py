"""The report pages' charts: inline SVG drawn from the values given, every label escaped, an empty chart a sentence."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest

from billing.charts import EMPTY, PALETTE, Bar, Segment, Stack, bar_chart, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quotes"'


def _parse(markup: str) -> ElementTree.Element:
    """The chart as XML: it must be well-formed for a browser to draw it inline."""
    return ElementTree.fromstring(markup)


def _widths(svg: ElementTree.Element) -> list[float]:
    return [float(rect.get("width", "0")) for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def test_a_bar_chart_draws_one_bar_per_entry_scaled_to_the_largest():
    bars = [Bar("acme", 40.0, "$40.00"), Bar("globex", 10.0, "$10.00"), Bar("initech", 20.0, "$20.00")]

    svg = _parse(bar_chart(bars, title="Spend per tenant"))

    widths = _widths(svg)
    assert len(widths) == 3
    assert widths[0] == pytest.approx(4 * widths[1])
    assert widths[2] == pytest.approx(2 * widths[1])
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert texts == ["acme", "$40.00", "globex", "$10.00", "initech", "$20.00"]
    assert svg.find(f"{SVG}title").text == "Spend per tenant"


def test_a_bar_of_zero_or_less_draws_nothing_and_all_zeros_do_not_divide_by_zero():
    svg = _parse(bar_chart([Bar("quiet", 0.0, "$0.00"), Bar("refunded", -3.0, "-$3.00")], title="t"))

    assert _widths(svg) == [0.0, 0.0]
    assert "-$3.00" in [text.text for text in svg.iter(f"{SVG}text")]


def test_a_long_label_is_shortened_on_the_chart_and_kept_whole_in_its_tooltip():
    label = "a-very-long-deployment-name/with-an-upstream-model"

    svg = _parse(bar_chart([Bar(label, 1.0, "1")], title="t"))

    shown = next(svg.iter(f"{SVG}text")).text
    assert shown.endswith("…")
    assert len(shown) < len(label)
    assert label in next(svg.iter(f"{SVG}g")).find(f"{SVG}title").text


@pytest.mark.parametrize(
    "draw",
    [
        lambda: bar_chart([Bar(HOSTILE, 1.0, HOSTILE)], title=HOSTILE),
        lambda: stacked_bars([Stack(HOSTILE, (Segment(HOSTILE, 1.0, HOSTILE),), HOSTILE)], title=HOSTILE),
    ],
    ids=["bars", "stacked"],
)
def test_every_label_title_and_value_is_escaped(draw):
    markup = str(draw())

    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    svg = _parse(markup)  # still well-formed, the hostile text inside it as text
    assert any(HOSTILE in (node.text or "") for node in svg.iter())


@pytest.mark.parametrize(
    "draw",
    [
        lambda: bar_chart([], title="t"),
        lambda: stacked_bars([], title="t"),
        lambda: stacked_bars(
            [Stack("11-01", (), "$0.00"), Stack("11-02", (Segment("m", 0.0, "$0.00"),), "$0.00")], title="t"
        ),
    ],
    ids=["bars", "stacked", "stacked-all-zero"],
)
def test_no_data_is_a_sentence_not_an_error(draw):
    assert str(draw()) == f'<p class="chart-empty">{EMPTY}</p>'


def test_an_empty_chart_may_say_why():
    assert "No failed requests" in bar_chart([], title="t", empty="No failed requests in this period.")


def test_stacked_bars_draw_a_column_a_day_each_series_in_its_colour_with_a_legend():
    stacks = [
        Stack("11-01", (Segment("gpt-4o", 3.0, "$3.00"), Segment("mini", 1.0, "$1.00")), "$4.00"),
        Stack("11-02", (), "$0.00"),
        Stack("11-03", (Segment("mini", 2.0, "$2.00"),), "$2.00"),
    ]

    svg = _parse(stacked_bars(stacks, title="Spend per day"))

    columns = [group for group in svg.iter(f"{SVG}g") if group.get("class") == "column"]
    assert [column.find(f"{SVG}title").text for column in columns] == ["11-01: $4.00", "11-02: $0.00", "11-03: $2.00"]
    drawn = [[rect.get("fill") for rect in column.iter(f"{SVG}rect")] for column in columns]
    assert drawn == [[PALETTE[0], PALETTE[1]], [], [PALETTE[1]]]
    heights = [[float(rect.get("height")) for rect in column.iter(f"{SVG}rect")] for column in columns]
    assert heights[0][0] == pytest.approx(3 * heights[0][1])
    assert heights[2][0] == pytest.approx(2 * heights[0][1])
    legend = [group.find(f"{SVG}text").text for group in svg.iter(f"{SVG}g") if group.get("class") == "legend"]
    assert legend == ["gpt-4o", "mini"]
    assert "$4.00" in [text.text for text in svg.iter(f"{SVG}text")]  # the axis' top is the tallest column


def test_a_long_period_labels_every_few_days_but_draws_every_day():
    stacks = [Stack(f"d{day}", (Segment("m", float(day), str(day)),), str(day)) for day in range(1, 61)]

    markup = str(stacked_bars(stacks, title="t"))

    assert markup.count('class="column"') == 60
    labels = re.findall(r'text-anchor="middle">(d\d+)</text>', markup)
    assert 5 <= len(labels) <= 12
    assert labels[0] == "d1"


def test_charts_given_the_same_series_colour_each_series_alike_and_list_only_those_drawn():
    series = ["gpt-4o", "mini", "free"]
    spend = [Stack("11-01", (Segment("gpt-4o", 3.0, "$3.00"), Segment("mini", 1.0, "$1.00")), "$4.00")]
    tokens = [Stack("11-01", (Segment("free", 9.0, "9"), Segment("mini", 5.0, "5")), "14")]

    charts = [_parse(stacked_bars(stacks, title="t", series=series)) for stacks in (spend, tokens)]

    legends = [
        {
            group.find(f"{SVG}text").text: group.find(f"{SVG}rect").get("fill")
            for group in svg.iter(f"{SVG}g")
            if group.get("class") == "legend"
        }
        for svg in charts
    ]
    assert legends == [{"gpt-4o": PALETTE[0], "mini": PALETTE[1]}, {"mini": PALETTE[1], "free": PALETTE[2]}]
    columns = [group for group in charts[1].iter(f"{SVG}g") if group.get("class") == "column"]
    drawn = [rect.get("fill") for column in columns for rect in column.iter(f"{SVG}rect")]
    assert drawn == [PALETTE[2], PALETTE[1]]


def test_charts_carry_no_style_attribute_for_the_content_security_policy():
    charts = [
        bar_chart([Bar("a", 1.0, "1")], title="t"),
        stacked_bars([Stack("a", (Segment("s", 1.0, "1"),), "1")], title="t"),
    ]

    for chart in charts:
        assert "style=" not in chart
        assert "<script" not in chart
