"""The dashboard's calls-per-minute chart (sipguard.web.charts): rows are bucketed into the
last minutes of the hour, and each minute is drawn as an inline SVG stack of bars by
decision, with a titled group per minute, a round axis top, an escaped legend in a fixed
order and no style attribute (the pages' Content-Security-Policy forbids inline styles)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from xml.etree import ElementTree

import pytest

from sipguard.web import charts
from sipguard.web.charts import COLOURS, OTHER, calls_per_minute, minutes_of_the_hour

AT = 1715839200.0  # 2024-05-16 06:00:00 UTC, a whole hour
SVG = "{http://www.w3.org/2000/svg}"
PLOT_BOTTOM = charts.HEIGHT - charts.BOTTOM  # the y of the x axis
PLOT_HEIGHT = charts.HEIGHT - charts.BOTTOM - charts.TOP


def _parsed(html: str) -> ElementTree.Element:
    """The chart's markup (the SVG, then the legend) as one XML tree."""
    return ElementTree.fromstring(f"<root>{html}</root>")


def _groups(html: str) -> list[ElementTree.Element]:
    """The chart's per-minute groups, oldest first."""
    chart = _parsed(html).find(f"{SVG}svg")
    assert chart is not None
    return chart.findall(f"{SVG}g")


def _title(group: ElementTree.Element) -> str:
    title = group.find(f"{SVG}title")
    assert title is not None
    return title.text or ""


@dataclass(frozen=True)
class Bar:
    """One drawn bar: its position, size and colour."""

    x: float
    y: float
    width: float
    height: float
    fill: str


def _rects(group: ElementTree.Element) -> list[Bar]:
    """A group's bars, bottom of the stack first."""
    return [Bar(float(rect.attrib["x"]), float(rect.attrib["y"]), float(rect.attrib["width"]),
                float(rect.attrib["height"]), rect.attrib["fill"])
            for rect in group.findall(f"{SVG}rect")]


def _legend(html: str) -> list[tuple[str, str]]:
    """The legend's entries as (decision, swatch colour), in order."""
    legend = _parsed(html).find("div[@class='legend']")
    assert legend is not None
    entries = []
    for key in legend.findall("span[@class='key']"):
        swatch = key.find("svg/rect")
        assert swatch is not None
        entries.append(("".join(key.itertext()).strip(), swatch.attrib["fill"]))
    return entries


def _axis_labels(html: str) -> list[str]:
    """The y axis labels, bottom to top."""
    chart = _parsed(html).find(f"{SVG}svg")
    assert chart is not None
    return [text.text or "" for text in chart.findall(f"{SVG}text")
            if float(text.attrib["x"]) < charts.LEFT]


# -- minutes_of_the_hour -----------------------------------------------------------------


@pytest.mark.parametrize("span", [1, 5, 60])
def test_minutes_of_the_hour_gives_span_minutes_ending_at_the_current_one(span: int) -> None:
    """The minutes returned are ``span`` consecutive minute starts, the last the current minute."""
    now = AT + 3 * 3600 + 17 * 60 + 42.5  # 09:17:42.5

    minutes = minutes_of_the_hour([], now, span=span)

    starts = [start for start, _ in minutes]
    assert len(starts) == span
    assert starts[-1] == AT + 3 * 3600 + 17 * 60
    assert starts == [starts[-1] - 60 * back for back in range(span - 1, -1, -1)]
    assert all(counts == {} for _, counts in minutes)


def test_minutes_of_the_hour_spans_an_hour_by_default() -> None:
    """Without a span the minutes cover the last hour, current minute included."""
    minutes = minutes_of_the_hour([], AT + 59.9)

    assert len(minutes) == 60
    assert minutes[0][0] == AT - 59 * 60
    assert minutes[-1][0] == AT


def test_minutes_of_the_hour_on_a_minute_boundary_ends_at_that_minute() -> None:
    """At exactly a minute's start, that minute is the current (last) one."""
    minutes = minutes_of_the_hour([], AT, span=3)

    assert [start for start, _ in minutes] == [AT - 120, AT - 60, AT]


def test_minutes_of_the_hour_sums_calls_per_decision_within_a_minute() -> None:
    """Rows of the same minute and decision are added up; other decisions are counted apart."""
    rows = [(AT + 60, "forward", 3), (AT + 90.5, "forward", 2), (AT + 60, "reject", 1),
            (AT + 120, "challenge", 4), (AT + 179.9, "challenge", 1)]

    minutes = minutes_of_the_hour(rows, AT + 150, span=3)

    assert minutes == [(AT, {}), (AT + 60, {"forward": 5, "reject": 1}),
                       (AT + 120, {"challenge": 5})]


def test_minutes_of_the_hour_drops_rows_outside_the_window() -> None:
    """Rows older than the first minute or newer than the current one are left out."""
    rows = [(AT - 61, "forward", 100), (AT - 60, "forward", 1), (AT + 60, "forward", 2),
            (AT + 120, "forward", 1000), (AT + 3600, "reject", 1000)]

    minutes = minutes_of_the_hour(rows, AT + 119.9, span=3)

    assert minutes == [(AT - 60, {"forward": 1}), (AT, {}), (AT + 60, {"forward": 2})]


# -- calls_per_minute: empty -------------------------------------------------------------


def test_no_minutes_says_there_are_no_calls() -> None:
    """With no minutes at all there is a sentence saying so, and no chart."""
    html = calls_per_minute([])

    assert "No calls" in html
    assert "<svg" not in html


# -- calls_per_minute: bars --------------------------------------------------------------


def test_one_group_per_minute_with_a_title_naming_the_counts() -> None:
    """Each minute is a group, oldest first, titled with its UTC time and calls by decision."""
    minutes = [(AT, {"reject": 2, "forward": 3, "challenge": 1}), (AT + 60, {}),
               (AT + 120, {"forward": 7})]

    groups = _groups(calls_per_minute(minutes))

    assert [_title(group) for group in groups] == [
        "06:00 UTC: 3 forward, 1 challenge, 2 reject",
        "06:01 UTC: no calls",
        "06:02 UTC: 7 forward",
    ]


def test_a_rect_per_decision_with_calls_in_the_decision_colour() -> None:
    """Each decision with calls is one bar in its colour; decisions without calls have none."""
    minutes = [(AT, {"forward": 3, "challenge": 0, "reject": 2, "blocked": 1}), (AT + 60, {})]

    groups = _groups(calls_per_minute(minutes))

    assert [rect.fill for rect in _rects(groups[0])] == [
        COLOURS["forward"], COLOURS["reject"], OTHER]
    assert _rects(groups[1]) == []
    assert _title(groups[0]) == "06:00 UTC: 3 forward, 2 reject, 1 blocked"


def test_bars_are_stacked_forward_at_the_bottom_and_touch() -> None:
    """Within a minute the bars stack from the axis up: forward, challenge, reject, then others."""
    minutes = [(AT, {"other": 1, "reject": 1, "challenge": 2, "forward": 4})]

    rects = _rects(_groups(calls_per_minute(minutes))[0])

    assert [rect.fill for rect in rects] == [
        COLOURS["forward"], COLOURS["challenge"], COLOURS["reject"], OTHER]
    assert rects[0].y + rects[0].height == pytest.approx(PLOT_BOTTOM, abs=0.1)
    for lower, upper in itertools.pairwise(rects):
        assert upper.y + upper.height == pytest.approx(lower.y, abs=0.1)
    assert len({rect.x for rect in rects}) == 1


def test_bar_heights_are_proportional_and_the_tallest_reaches_the_top() -> None:
    """Heights are calls times a single scale, and a stack of the axis top fills the plot."""
    minutes = [(AT, {"forward": 6, "reject": 4}), (AT + 60, {"forward": 2}),
               (AT + 120, {"challenge": 5})]

    groups = _groups(calls_per_minute(minutes))

    scale = PLOT_HEIGHT / 10  # the tallest stack is 10 calls, itself a round top
    heights = [[rect.height for rect in _rects(group)] for group in groups]
    assert heights == [[pytest.approx(6 * scale, abs=0.1), pytest.approx(4 * scale, abs=0.1)],
                       [pytest.approx(2 * scale, abs=0.1)], [pytest.approx(5 * scale, abs=0.1)]]
    tallest = _rects(groups[0])
    assert min(rect.y for rect in tallest) == pytest.approx(charts.TOP, abs=0.1)


def test_the_tallest_stack_is_scaled_to_the_round_top_above_it() -> None:
    """A tallest stack of 7 calls is drawn against an axis of 10, so it fills 70% of the plot."""
    minutes = [(AT, {"forward": 7}), (AT + 60, {"reject": 1})]

    html = calls_per_minute(minutes)
    groups = _groups(html)

    assert _rects(groups[0])[0].height == pytest.approx(0.7 * PLOT_HEIGHT, abs=0.1)
    assert _rects(groups[1])[0].height == pytest.approx(0.1 * PLOT_HEIGHT, abs=0.1)
    assert _axis_labels(html) == ["0", "5", "10"]


def test_axis_labels_of_a_single_call_show_the_half() -> None:
    """With at most one call a minute the axis reads 0, 0.5 and 1."""
    assert _axis_labels(calls_per_minute([(AT, {"forward": 1})])) == ["0", "0.5", "1"]


def test_minutes_run_left_to_right_and_stay_inside_the_chart() -> None:
    """Each minute's bars are right of the minute before, and every bar is inside the view box."""
    minutes = minutes_of_the_hour([(AT - 60 * back, "forward", back + 1) for back in range(60)],
                                  AT + 30)

    groups = _groups(calls_per_minute(minutes))

    xs = [_rects(group)[0].x for group in groups]
    assert xs == sorted(xs)
    assert len(set(xs)) == 60
    for group in groups:
        for rect in _rects(group):
            assert rect.x >= charts.LEFT
            assert rect.x + rect.width <= charts.WIDTH
            assert rect.y >= charts.TOP - 0.1
            assert rect.y + rect.height <= PLOT_BOTTOM + 0.1


def test_a_full_hour_labels_the_first_middle_and_last_minutes() -> None:
    """An hour of minutes is labelled under the axis at its first, middle and last minute."""
    minutes = minutes_of_the_hour([(AT, "forward", 1)], AT + 30)
    chart = _parsed(calls_per_minute(minutes)).find(f"{SVG}svg")
    assert chart is not None

    labels = [(text.text, text.attrib["text-anchor"]) for text in chart.findall(f"{SVG}text")
              if float(text.attrib["x"]) >= charts.LEFT]

    # The last label ends at the right edge of its bar, so that it stays in the picture.
    assert labels == [("05:01", "middle"), ("05:31", "middle"), ("06:00", "end")]
    last = next(text for text in chart.findall(f"{SVG}text") if text.text == "06:00")
    assert float(last.attrib["x"]) <= charts.WIDTH


# -- the axis top ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "top"), [
    (-5, 1), (0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (9, 10), (10, 10),
    (11, 20), (20, 20), (21, 50), (50, 50), (51, 100), (99, 100), (100, 100), (101, 200),
    (200, 200), (201, 500), (500, 500), (501, 1000), (999, 1000), (1000, 1000),
    (1001, 2000), (10**6, 10**6), (10**6 + 1, 2 * 10**6),
])
def test_nice_top_is_the_smallest_one_two_or_five_times_a_power_of_ten(
        value: int, top: int) -> None:
    """The axis top is the first of 1, 2, 5, 10, 20, 50, ... at or above the tallest stack."""
    assert charts._nice_top(value) == top


# -- safety: escaping and no inline styles -----------------------------------------------


def test_decision_names_are_html_escaped() -> None:
    """A decision name holding markup is escaped in the bar title and in the legend."""
    hostile = '<script>alert("x")</script>&'
    html = calls_per_minute([(AT, {hostile: 2, "forward": 1})])

    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    groups = _groups(html)
    assert _title(groups[0]) == f"06:00 UTC: 1 forward, 2 {hostile}"
    assert _legend(html)[-1] == (hostile, OTHER)


def test_no_inline_style_anywhere() -> None:
    """Neither the chart nor the legend has a style attribute or a style element."""
    minutes = minutes_of_the_hour(
        [(AT - 60 * back, decision, back % 4)
         for back in range(60) for decision in ("forward", "challenge", "reject", "busy")],
        AT + 30)
    for html in (calls_per_minute(minutes), calls_per_minute([])):
        assert not re.search(r"\bstyle\s*=", html, re.IGNORECASE)
        assert "<style" not in html.lower()
        for element in _parsed(html).iter():
            assert "style" not in element.attrib
            assert not element.tag.endswith("style")


# -- legend ------------------------------------------------------------------------------


def test_legend_lists_decisions_seen_in_stacking_order() -> None:
    """The legend names each decision seen once: forward, challenge, reject, then the others."""
    minutes = [(AT, {"reject": 1, "zebra": 1}), (AT + 60, {"challenge": 2, "blocked": 1}),
               (AT + 120, {"forward": 3, "reject": 1})]

    assert _legend(calls_per_minute(minutes)) == [
        ("forward", COLOURS["forward"]), ("challenge", COLOURS["challenge"]),
        ("reject", COLOURS["reject"]), ("blocked", OTHER), ("zebra", OTHER)]


def test_legend_leaves_out_decisions_never_seen() -> None:
    """Only decisions present in some minute appear in the legend."""
    minutes = [(AT, {"reject": 4}), (AT + 60, {})]

    assert _legend(calls_per_minute(minutes)) == [("reject", COLOURS["reject"])]


def test_chart_is_labelled_for_screen_readers() -> None:
    """The chart is an image with an accessible name, and the legend swatches are hidden."""
    html = calls_per_minute([(AT, {"forward": 1})])
    root = _parsed(html)
    chart = root.find(f"{SVG}svg")
    assert chart is not None

    assert chart.attrib["role"] == "img"
    assert "Calls per minute" in chart.attrib["aria-label"]
    assert [swatch.attrib["aria-hidden"] for swatch in root.iter("svg")] == ["true"]
