"""The dashboard's server-side SVG charts: categories named in full where they fit, escaped, never cut blind."""

from __future__ import annotations

import re

from frontend import charts


def test_category_names_wrap_at_spaces_and_end_in_an_ellipsis_only_when_they_do_not_fit() -> None:
    assert charts.label_lines("Structures destroyed", max_chars=25) == ["Structures destroyed"]
    assert charts.label_lines("Structures destroyed", max_chars=12) == ["Structures", "destroyed"]
    assert charts.label_lines("Inconsistent or misleading", max_chars=12) == ["Inconsistent", "or misleadi…"]
    assert charts.label_lines("Supercalifragilistic", max_chars=8) == ["Superca…"]
    assert charts.label_lines("0.5", max_chars=6) == ["0.5"] and charts.label_lines("", max_chars=6) == []


def test_a_bar_chart_names_each_bar_whole_in_its_tooltip_and_as_far_as_it_fits_below() -> None:
    items = [("Structures intact", 2), ("Structures destroyed", 1), ("No <structures>", 1)]
    svg = str(charts.bar_chart(items, title="Labels", colours={"Structures intact": "#2ca02c"}))
    assert svg.count("<rect") == 3 and 'fill="#2ca02c"' in svg
    assert "<title>Structures destroyed: 1</title>" in svg and "&lt;structures&gt;" in svg
    below = re.findall(r'text-anchor="middle" [^>]*>([^<]*)</text>', svg)
    assert "Structures destroyed" in below and "Structures intact" in below  # 3 bars: room for 25 characters
    narrow = str(charts.bar_chart(items, title="Labels", width=240))
    lines = re.findall(r'text-anchor="middle" [^>]*>([^<]*)</text>', narrow)
    assert "Structures" in lines and "destroyed" in lines  # wrapped, not cut to "Structures des"
