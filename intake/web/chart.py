"""A small bar chart as inline SVG, rendered on the server (pure: numbers in, markup out).

Colours are fixed per series position and every bar has a <title>, so the chart reads
without colour; the page also shows the same numbers as a table.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from markupsafe import Markup, escape

# NHS palette: blue, dark green, purple, warm yellow, dark grey (all >= 3:1 on white but yellow,
# which only ever draws bars with an outline).
COLOURS = ("#005eb8", "#007f3b", "#330072", "#ffb81c", "#425563")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 220, 32, 28, 10


def weekly_bars(weeks: Sequence[str], series: Mapping[str, Sequence[int]]) -> Markup:
    """Grouped bars: one group of bars per week, one bar per series (e.g. per group)."""
    names = list(series)
    peak = max([1] + [v for values in series.values() for v in values])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(weeks))
    bar = max(2.0, (slot - 8) / max(1, len(names)))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Applications per week per group</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" stroke="#425563"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end" font-size="11" fill="#212b32">{peak}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="11" fill="#212b32">0</text>']
    for w, week in enumerate(weeks):
        x0 = LEFT + w * slot + 4
        for s, name in enumerate(names):
            value = series[name][w]
            h = plot_h * value / peak
            colour = COLOURS[s % len(COLOURS)]
            parts.append(f'<rect x="{x0 + s * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                         f'fill="{colour}" stroke="#212b32" stroke-width="0.5"><title>{escape(name)}, week of {escape(week)}: {value}</title></rect>')
        parts.append(f'<text x="{x0 + slot / 2 - 4:.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11" fill="#212b32">{escape(week)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, colour) pairs in series order, for the HTML legend beside the chart."""
    return [(n, COLOURS[i % len(COLOURS)]) for i, n in enumerate(names)]
