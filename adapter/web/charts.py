"""Bar charts as inline SVG, drawn on the server: no script, no CDN, readable without colour.

Each bar has a <title> (shown on hover and read by screen readers) and the
chart has a role and a label; the same figures are always in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from adapter.csvexport import euros_text

_COLOURS = ("#1f5fa8", "#e07b00", "#2e8540", "#8a2be2")


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int]


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series], *, money: bool = False,
              width: int = 640, height: int = 260) -> Markup:
    """Grouped vertical bars: one group per category, one bar per series."""
    left, bottom, top = 70, 50, 20
    plot_width, plot_height = width - left - 10, height - bottom - top
    highest = max([value for one in series for value in one.values] + [0])
    peak = _axis_top(highest, money)
    group_width = plot_width / max(len(categories), 1)
    bar_width = min(60.0, max(2.0, (group_width * 0.8) / max(len(series), 1)))

    def label_of(value: int) -> str:
        return euros_text(value, symbol=True, grouped=True) if money else str(value)

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    # Whole-number axes (children) get no halfway line: "0.5 children" reads as nonsense.
    for fraction in ((0,) if highest <= 0 else (0, 0.5, 1) if money or peak >= 4 else (0, 1)):
        y = top + plot_height * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                     f'{escape(label_of(int(peak * fraction)))}</text>')
    if highest <= 0:
        parts.append(f'<text x="{left + plot_width / 2:.1f}" y="{top + plot_height / 2:.1f}" text-anchor="middle" '
                     f'font-size="14">Geen gegevens in deze periode.</text>')
    for index, category in enumerate(categories):
        group_x = left + index * group_width + group_width * 0.1
        for series_index, one in enumerate(series):
            value = one.values[index]
            bar_height = plot_height * value / peak if value > 0 else 0
            x = group_x + series_index * bar_width
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{top + plot_height - bar_height:.1f}" '
                         f'width="{bar_width - 1:.1f}" height="{bar_height:.1f}" '
                         f'fill="{_COLOURS[series_index % len(_COLOURS)]}">'
                         f'<title>{escape(one.label)}, {escape(category)}: {escape(label_of(value))}</title></rect>')
        parts.append(f'<text x="{group_x + group_width * 0.4:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'font-size="11">{escape(category)}</text>')
    for series_index, one in enumerate(series):
        x = left + series_index * 150
        parts.append(f'<rect x="{x}" y="{height - 18}" width="12" height="12" '
                     f'fill="{_COLOURS[series_index % len(_COLOURS)]}"/>'
                     f'<text x="{x + 16}" y="{height - 8}" font-size="12">{escape(one.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis_top(highest: int, money: bool) -> int:
    """The top line's value: the highest bar rounded up so that the halfway line's label is the value at its
    height. Unrounded, 5 children labelled their 2.5 line "2" (a bar of 2 stood below it), and no spending at
    all drew an axis of € 0,00, € 0,00 and € 0,01."""
    step = 200 if money else 2 if highest >= 4 else 1  # money: whole euros halfway
    return max(step, -(-highest // step) * step)
