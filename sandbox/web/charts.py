"""Charts as inline SVG, drawn on the server: no script, no library to download, works with CSP.

Every number placed in the markup is formatted here and every text label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 48, 28, 12


def bar(value: float, total: float, *, width: int = 240, height: int = 14) -> Markup:
    """A horizontal meter of ``value`` out of ``total``."""
    share = 0.0 if total <= 0 else max(0.0, min(1.0, value / total))
    filled = round(share * width, 1)
    # Only numbers formatted here go into the markup.
    return Markup(  # noqa: S704
        f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-hidden="true"><rect width="{width}" height="{height}" class="bar-bg"/>'
        f'<rect width="{filled}" height="{height}" class="bar-fg"/></svg>'
    )


def _nice_max(values: Sequence[float]) -> float:
    """The axis top: the smallest 1, 2 or 5 times a power of ten at or above the largest value."""
    top = max(values, default=0.0)
    if top <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(top))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= top)


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def series_chart(days: Sequence[date], values: Sequence[float], *, title: str, css: str) -> Markup:
    """Bars per day with a labelled axis; the title is the accessible name of the picture."""
    top = _nice_max(values)
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(len(values), 1)
    parts = [
        f'<svg class="chart {escape(css)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + plot_h}" '
        'class="axis"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" class="tick" text-anchor="end">{_fmt(top)}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" class="tick" text-anchor="end">0</text>',
    ]
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        h = round(plot_h * (value / top), 1) if top else 0
        x = round(PAD_LEFT + i * slot + slot * 0.15, 1)
        parts.append(
            f'<rect x="{x}" y="{round(PAD_TOP + plot_h - h, 1)}" width="{round(slot * 0.7, 1)}" '
            f'height="{h}" class="mark"><title>{day.isoformat()}: {_fmt(value)}</title></rect>'
        )
        if len(values) <= 16 or i % max(1, len(values) // 8) == 0:
            parts.append(
                f'<text x="{round(x + slot * 0.35, 1)}" y="{HEIGHT - 8}" class="tick" '
                f'text-anchor="middle">{day.strftime("%m-%d")}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only
