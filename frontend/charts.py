"""Inline SVG charts rendered on the server: bars and lines from counts, readable without any JavaScript."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

FONT = 'font-family="system-ui, sans-serif" font-size="11"'


CHAR_PX = 6.2  # the width of an average character at FONT's 11 px


def label_lines(label: str, *, max_chars: int, max_lines: int = 2) -> list[str]:
    """A category's name wrapped at spaces into at most ``max_lines`` lines of ``max_chars``; what still
    does not fit ends in an ellipsis (the bar's tooltip holds the whole name)."""
    max_chars = max(max_chars, 3)
    lines: list[str] = []
    words = label.split()
    while words and len(lines) < max_lines:
        line = words.pop(0)
        while words and len(line) + 1 + len(words[0]) <= max_chars:
            line += " " + words.pop(0)
        lines.append(line)
    if lines and (words or len(lines[-1]) > max_chars):
        rest = " ".join([lines[-1], *words])
        lines[-1] = rest[: max_chars - 1].rstrip() + "…"
    return [line if len(line) <= max_chars else line[: max_chars - 1] + "…" for line in lines]


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    colours: dict[str, str] | None = None,
    width: int = 480,
    height: int = 200,
    colour: str = "#0b5cad",
) -> SafeString:
    """Vertical bars with their value on top and the category below; an empty chart says so."""
    if not items:
        return _empty(title, width, height)
    left, right, top, bottom = 8, 8, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(value for _, value in items) or 1
    step = plot_w / len(items)
    bar_w = max(step * 0.75, 1)
    parts = [_open(title, width, height)]
    for index, (label, value) in enumerate(items):
        bar_h = plot_h * value / peak
        x = left + index * step + (step - bar_w) / 2
        y = top + plot_h - bar_h
        fill = (colours or {}).get(label, colour)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{bar_h:.1f}" fill="{escape(fill)}">'
            f"<title>{escape(label)}: {_number(value)}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" {FONT}>{_number(value)}</text>'
        )
        for line_no, line in enumerate(label_lines(label, max_chars=int(step / CHAR_PX))):
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14 + 13 * line_no:.1f}" '
                f'text-anchor="middle" {FONT}>{escape(line)}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/></svg>'
    )
    return mark_safe("".join(parts))  # every interpolated text is escaped above


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 480,
    height: int = 200,
    colour: str = "#2f8a4c",
    percent: bool = False,
) -> SafeString:
    """A line through the points with its first and last label on the axis and the peak value marked."""
    if not points:
        return _empty(title, width, height)
    left, right, top, bottom = 40, 12, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = 1.0 if percent else (max(value for _, value in points) or 1)
    step = plot_w / max(len(points) - 1, 1)
    coords = [
        (left + index * step, top + plot_h - plot_h * value / peak) for index, (_, value) in enumerate(points)
    ]
    fmt = (lambda v: f"{100 * v:.0f}%") if percent else _number
    parts = [_open(title, width, height)]
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" {FONT}>{fmt(peak)}</text>'
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" {FONT}>{fmt(0)}</text>'
    )
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{escape(colour)}" stroke-width="2"/>')
    for (x, y), (label, value) in zip(coords, points, strict=True):
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(colour)}">'
            f"<title>{escape(label)}: {fmt(value)}</title></circle>"
        )
    parts.append(
        f'<text x="{left}" y="{height - bottom + 16}" {FONT}>{escape(points[0][0])}</text>'
        f'<text x="{width - right}" y="{height - bottom + 16}" text-anchor="end" {FONT}>'
        f"{escape(points[-1][0])}</text></svg>"
    )
    return mark_safe("".join(parts))  # every interpolated text is escaped above


def _open(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
    )


def _empty(title: str, width: int, height: int) -> SafeString:
    empty = escape(gettext("No data yet"))
    return mark_safe(  # the title and the words are escaped
        _open(title, width, height)
        + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" {FONT} fill="#555">{empty}</text></svg>'
    )
