"""Server-drawn SVG charts: no script, readable by a screen reader (role, title, desc)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 180
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 44, 28, 12
# Distinguishable for the common colour blindnesses (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    tick_every: int = 1,
) -> Markup:
    """Stacked bars, one per label; each series a colour, with a legend."""
    count = max(len(labels), 1)
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    top = _nice(max([*totals, 4]))  # counts: at least 0..4, whole ticks
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    step = plot_w / count
    bar = max(step * 0.8, 1.0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 24}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]
    parts += _axes(top, plot_h)
    for i in range(len(labels)):
        y: float = MARGIN_TOP + plot_h
        x = MARGIN_LEFT + i * step + (step - bar) / 2
        for s, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(labels[i])}: '
                f"{_fmt(value)} {escape(name)}</title></rect>"
            )
        if i % tick_every == 0:
            parts.append(
                f'<text x="{MARGIN_LEFT + i * step + step / 2:.1f}" y="{HEIGHT - 10}" '
                f'text-anchor="middle" class="tick">{escape(labels[i])}</text>'
            )
    legend_x = MARGIN_LEFT
    for s, (name, _values) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT + 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT + 17}" class="tick">{escape(name)}</text>'
        )
        legend_x += 14 + 8 * len(name) + 18
    parts.append("</svg>")
    # Every text in it was escaped above.
    return Markup("".join(parts))  # noqa: S704


def _axes(top: float, plot_h: float) -> list[str]:
    lines = []
    for k in range(5):
        tick = top * k / 4
        y = MARGIN_TOP + plot_h - plot_h * k / 4
        lines.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(tick)}</text>"
        )
    return lines


def _nice(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
