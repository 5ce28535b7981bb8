"""Charts for the dashboard as inline SVG drawn on the server: no JavaScript, nothing
fetched, and allowed by the pages' Content-Security-Policy (presentation attributes
only, never a style attribute). Every bar carries a <title> that a browser shows on
hover and a screen reader reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

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
    calls and a legend. ``minutes`` is (start of the minute, calls by decision)."""
    if not any(count for _, counts in minutes for count in counts.values()):
        return '<p class="muted">No calls in the last hour.</p>'
    top = _nice_top(max((sum(counts.values()) for _, counts in minutes), default=0))
    plot_width = WIDTH - LEFT - 4
    plot_height = HEIGHT - BOTTOM - TOP
    slot = plot_width / len(minutes)
    bar = max(slot - 1.5, 1.0)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
             f'aria-label="Calls per minute in the last hour, by decision" '
             f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" '
             f'font-size="11" fill="#5b6576">']
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_height * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#d9dee7" stroke-width="1"/>'
                     f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{_number(top * fraction)}</text>")
    for index, (start, counts) in enumerate(minutes):
        x = LEFT + index * slot
        y = TOP + plot_height
        label = datetime.fromtimestamp(start, UTC).strftime("%H:%M UTC")
        detail = ", ".join(f"{count} {decision}" for decision, count in _ordered(counts))
        parts.append(f"<g><title>{escape(label)}: {escape(detail or 'no calls')}</title>")
        for decision, count in _ordered(counts):
            height = plot_height * count / top
            y -= height
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                         f'height="{height:.1f}" fill="{COLOURS.get(decision, OTHER)}"/>')
        parts.append("</g>")
    for index in sorted({0, len(minutes) // 2, len(minutes) - 1}):
        start = minutes[index][0]
        x = LEFT + index * slot + bar / 2
        # The last label ends at its bar so that it stays inside the picture.
        anchor = "end" if index == len(minutes) - 1 and index > 0 else "middle"
        if anchor == "end":
            x = LEFT + index * slot + bar
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                     f'{datetime.fromtimestamp(start, UTC).strftime("%H:%M")}</text>')
    parts.append("</svg>")
    seen = sorted({decision for _, counts in minutes for decision in counts},
                  key=_rank)
    legend = "".join(f'<span class="key"><svg width="10" height="10" aria-hidden="true">'
                     f'<rect width="10" height="10" fill="{COLOURS.get(decision, OTHER)}"/>'
                     f"</svg> {escape(decision)}</span>" for decision in seen)
    return "".join(parts) + f'<div class="legend">{legend} <span class="muted">(UTC)</span></div>'


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
