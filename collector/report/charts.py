"""The report's charts as SVG text: inline in the HTML, drawn by fpdf2 into the PDF, so
both show the same pictures. Plain shapes with presentation attributes only (no CSS, no
script): what every SVG renderer, fpdf2's included, draws the same way."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

COLOURS = {"up": "#2e7d32", "degraded": "#f9a825", "down": "#c62828",
           "unknown": "#9e9e9e", "maintenance": "#1565c0"}
AXIS_FLOORS = (99.9, 99.5, 99.0, 98.0, 95.0, 90.0, 80.0, 50.0, 0.0)
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, text: str, size: float = 10, anchor: str = "start",
          fill: str = "#212121") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {FONT} fill="{fill}" '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str) -> str:
    return (f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(w, 0.6):.2f}" height="{h:.2f}" '
            f'fill="{fill}"/>')


def axis_floor(uptimes: Sequence[float]) -> float:
    """A round floor (percent) below the worst uptime, so that 99.9 and 99.99 can be told
    apart on an axis from it to 100 %."""
    worst = min((u * 100 for u in uptimes), default=100.0)
    return next(f for f in AXIS_FLOORS if f <= worst)


def uptime_bars(rows: Sequence[tuple[str, float]], title: str, width: float = 900,
                floor: float | None = None) -> str:
    """(label, uptime 0..1), worst first: one bar each, on an axis from `floor` (default
    axis_floor of these rows) to 100 %."""
    if floor is None:
        floor = axis_floor([u for _label, u in rows])
    left, right, bar, top = 70.0, 80.0, 13.0, 24.0
    plot = width - left - right
    height = top + bar * len(rows) + 24
    body = [_text(left, 14, title, 13)]
    for i, (label, uptime) in enumerate(rows):
        y = top + i * bar
        share = (uptime * 100 - floor) / (100 - floor) if floor < 100 else 1.0
        colour = COLOURS["up"] if uptime >= 0.999 else COLOURS["degraded"] if (
            uptime >= 0.99) else COLOURS["down"]
        body.append(_text(left - 4, y + bar - 3, label, 10, "end"))
        body.append(_rect(left, y + 1, plot * max(share, 0.0), bar - 2, colour))
        body.append(_text(left + plot + 4, y + bar - 3, f"{uptime * 100:.3f} %", 10))
    axis_y = top + bar * len(rows) + 12
    body.append(_text(left, axis_y, f"{floor:g} %", 10))
    body.append(_text(left + plot, axis_y, "100 %", 10, "end"))
    return _svg(width, height, body, title)


def timeline(segments: Sequence[tuple[float, float, str]], maintenance: Sequence[tuple[float,
             float]], lo: float, hi: float, title: str, width: float = 900) -> str:
    """The period as a strip: each state interval in its colour, maintenance below."""
    height, left = 22.0, 2.0
    plot = width - 2 * left
    span = max(hi - lo, 1e-9)
    body = [_rect(left, 2, plot, 12, "#eeeeee")]
    for s, e, state in segments:
        if state != "up":
            body.append(_rect(left + plot * (s - lo) / span, 2, plot * (e - s) / span, 12,
                              COLOURS.get(state, "#000000")))
    for s, e in maintenance:
        body.append(_rect(left + plot * (s - lo) / span, 16, plot * (e - s) / span, 4,
                          COLOURS["maintenance"]))
    return _svg(width, height, body, title)


def monthly_bars(rows: Sequence[tuple[str, float | None]], title: str, unit: str = "ms",
                 scale: float = 1000.0, width: float = 900) -> str:
    """(month, value in seconds or None): one bar per month, values in `unit`."""
    values = [v * scale for _m, v in rows if v is not None]
    top_value = max(values, default=1.0) or 1.0
    left, top, plot_h = 10.0, 22.0, 120.0
    step = (width - 2 * left) / max(len(rows), 1)
    body = [_text(left, 14, title, 13)]
    for i, (month, value) in enumerate(rows):
        x = left + i * step
        if value is not None:
            h = plot_h * value * scale / top_value
            bar = min(step * 0.7, 48.0)
            body.append(_rect(x + (step - bar) / 2, top + plot_h - h, bar, h, "#1565c0"))
            body.append(_text(x + step / 2, top + plot_h - h - 3, f"{value * scale:.1f}",
                              10, "middle"))
        body.append(_text(x + step / 2, top + plot_h + 13, month, 10, "middle"))
    body.append(_text(width - left, 14, unit, 11, "end"))
    return _svg(width, top + plot_h + 20, body, title)
