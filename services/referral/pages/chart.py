"""The activity chart: an inline SVG of stacked bars, one per month, drawn on the server.

Pure: plain numbers in, SVG text out; no script and no chart library. In a
right-to-left page time runs from right to left, as the reader reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 760, 300
TOP, BOTTOM, SIDE = 28, 52, 44


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    """The month, as the reader names it (first line)."""
    sublabel: str
    """The year (second line)."""
    parts: tuple[int, ...]
    """Stacked from the axis up, in the order of the chart's series."""

    @property
    def total(self) -> int:
        return sum(self.parts)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^n at least `value` (an axis that ends on a round number)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bars_svg(
    bars: Sequence[Bar],
    series: Sequence[tuple[str, str]],
    *,
    title: str,
    rtl: bool = False,
) -> Markup:
    """Stacked bars labelled with their month and total; `series` is (css class, legend name)."""
    top = nice_ceiling(max((b.total for b in bars), default=0))
    plot_w = WIDTH - 2 * SIDE
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(bars), 1)
    bar_w = min(48.0, step * 0.62)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    ticks = [0, top // 2, top] if top % 2 == 0 else [0, top]
    for tick in ticks:
        y = TOP + plot_h - plot_h * (tick / top)
        label = str(tick)
        anchor_x = SIDE - 6 if not rtl else WIDTH - SIDE + 6
        anchor = "end" if not rtl else "start"
        out.append(
            f'<line class="grid" x1="{SIDE}" x2="{WIDTH - SIDE}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{anchor_x}" y="{y + 4:.1f}" text-anchor="{anchor}">{label}</text>'
        )
    for index, bar in enumerate(bars):
        slot = len(bars) - 1 - index if rtl else index
        centre = SIDE + step * slot + step / 2
        x = centre - bar_w / 2
        base: float = TOP + plot_h
        for (css, name), value in zip(series, bar.parts, strict=True):
            if value <= 0:
                continue
            height = plot_h * value / top
            base -= height
            out.append(
                f'<rect class="{escape(css)}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{height:.1f}"><title>{escape(name)}: {value}</title></rect>'
            )
        if bar.total:
            out.append(
                f'<text class="value" x="{centre:.1f}" y="{base - 5:.1f}" '
                f'text-anchor="middle">{bar.total}</text>'
            )
        out.append(
            f'<text class="month" x="{centre:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{escape(bar.label)}</text>"
            f'<text class="year" x="{centre:.1f}" y="{TOP + plot_h + 34}" text-anchor="middle">'
            f"{escape(bar.sublabel)}</text>"
        )
    out.append(
        f'<line class="axis" x1="{SIDE}" x2="{WIDTH - SIDE}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every text inside was escaped above
