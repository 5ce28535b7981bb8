"""Charts for the dashboard as inline SVG drawn on the server: no JavaScript, nothing
fetched, and allowed by the pages' Content-Security-Policy (presentation attributes
only, never a style attribute). Every bar carries a <title> that a browser shows on
hover and a screen reader reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from sipguard.web.render import render

# Decisions in the order they are stacked, with their colours (the stylesheet's).
COLOURS = {"forward": "#1e7b34", "challenge": "#a15c00", "reject": "#b3261e"}
OTHER = "#7b8494"
WIDTH, HEIGHT = 1000, 170
LEFT, BOTTOM, TOP = 34, 22, 8


def _nice_top(value: int) -> int:
    """A round number at or above ``value`` for the axis (1, 2, 5, 10, 20, 50, ...)."""
    if value <= 1:
        return 1
    power: int = 10 ** int(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def calls_per_minute(minutes: Sequence[tuple[float, dict[str, int]]]) -> str:
    """A stacked bar per minute (oldest left), one colour per decision, with a y axis in
    calls and a legend. ``minutes`` is (start of the minute, calls by decision). The
    geometry is worked out here; the markup is the Jinja2 template calls_per_minute.svg
    (autoescaped, as the pages are)."""
    if not any(count for _, counts in minutes for count in counts.values()):
        return render("calls_per_minute.svg", bars=[])
    top = _nice_top(max((sum(counts.values()) for _, counts in minutes), default=0))
    plot_width = WIDTH - LEFT - 4
    plot_height = HEIGHT - BOTTOM - TOP
    slot = plot_width / len(minutes)
    bar = max(slot - 1.5, 1.0)
    grid = [{"y": f"{TOP + plot_height * (1 - fraction):.1f}",
             "label_y": f"{TOP + plot_height * (1 - fraction) + 4:.1f}",
             "label": _number(top * fraction)} for fraction in (0.0, 0.5, 1.0)]
    bars = []
    for index, (start, counts) in enumerate(minutes):
        x = LEFT + index * slot
        y = float(TOP + plot_height)
        label = datetime.fromtimestamp(start, UTC).strftime("%H:%M UTC")
        detail = ", ".join(f"{count} {decision}" for decision, count in _ordered(counts))
        rects = []
        for decision, count in _ordered(counts):
            height = plot_height * count / top
            y -= height
            rects.append({"x": f"{x:.1f}", "y": f"{y:.1f}", "width": f"{bar:.1f}",
                          "height": f"{height:.1f}", "fill": COLOURS.get(decision, OTHER)})
        bars.append({"title": f"{label}: {detail or 'no calls'}", "rects": rects})
    labels = []
    for index in sorted({0, len(minutes) // 2, len(minutes) - 1}):
        # The last label ends at its bar so that it stays inside the picture.
        anchor = "end" if index == len(minutes) - 1 and index > 0 else "middle"
        x = LEFT + index * slot + (bar if anchor == "end" else bar / 2)
        labels.append({"x": f"{x:.1f}", "anchor": anchor,
                       "text": datetime.fromtimestamp(minutes[index][0], UTC).strftime("%H:%M")})
    seen = sorted({decision for _, counts in minutes for decision in counts}, key=_rank)
    return render("calls_per_minute.svg", width=WIDTH, height=HEIGHT, left=LEFT, grid=grid,
                  bars=bars, labels=labels,
                  legend=[(decision, COLOURS.get(decision, OTHER)) for decision in seen])


def _rank(decision: str) -> tuple[int, str]:
    order = list(COLOURS)
    return (order.index(decision) if decision in order else len(order), decision)


def _ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
    return [(decision, counts[decision]) for decision in sorted(counts, key=_rank)
            if counts[decision] > 0]


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def minutes_of_the_hour(rows: Sequence[tuple[float, str, int]], now: float,
                        span: int = 60) -> list[tuple[float, dict[str, int]]]:
    """The last ``span`` whole minutes up to ``now`` (the current one included), each
    with its calls by decision, from (minute start, decision, calls) rows."""
    current = math.floor(now / 60) * 60
    starts = [current - 60 * back for back in range(span - 1, -1, -1)]
    table: dict[float, dict[str, int]] = {start: {} for start in starts}
    for start, decision, calls in rows:
        minute = math.floor(start / 60) * 60
        if minute in table:
            table[minute][decision] = table[minute].get(decision, 0) + calls
    return [(start, table[start]) for start in starts]
