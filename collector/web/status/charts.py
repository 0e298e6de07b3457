"""The status page's charts of a mission's ICMP checks, SmokePing-style: the RTT band
(min to max) and the median coloured by loss, over a day and over a week.

Drawn here as SVG geometry (path data, ticks, summary figures) from rollup rows, so the
page needs no JavaScript and the template only places the paths; pure functions of their
arguments, run on a worker thread while the page is prepared.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime

from babel.dates import format_skeleton

from collector.store.rollups import DAY, loss_ratio
from collector.web.status.formatting import Formatter


def loss_class(loss: float | None) -> str:
    if loss is None:
        return "lx"
    if loss <= 0:
        return "l0"
    if loss < 0.05:
        return "l1"
    if loss < 0.20:
        return "l2"
    return "l3"


def nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude


@dataclass
class Chart:
    id: str
    span: str  # "day" or "week"
    width: int = 760
    height: int = 240
    left: int = 56
    right: int = 14
    top: int = 24
    bottom: int = 30
    band: str = ""
    lines: dict[str, str] = field(default_factory=dict)
    lost: str = ""
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    buckets: int = 0
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    loss: float | None = None
    bad_buckets: int = 0  # buckets with 20 % loss or more

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def make_chart(chart_id: str, span: str, rows: list, start: float, end: float,
               resolution: int, fmt: Formatter) -> Chart:
    c = Chart(chart_id, span)
    pw, ph = c.plot_right - c.left, c.plot_bottom - c.top
    c.buckets = len(rows)
    medians = [r.rtt_median_s for r in rows if r.rtt_median_s is not None]
    maxes = sorted(r.rtt_max_s for r in rows if r.rtt_max_s is not None)
    mins = [r.rtt_min_s for r in rows if r.rtt_min_s is not None]
    sent = sum(r.sent or 0 for r in rows)
    c.loss = (sent - sum(r.received or 0 for r in rows)) / sent if sent else None
    c.median_s = statistics.median(medians) if medians else None
    c.min_s = min(mins) if mins else None
    c.max_s = maxes[-1] if maxes else None
    c.bad_buckets = sum(1 for r in rows if loss_class(loss_ratio(r)) == "l3")

    # Scale: the band's top is clipped at the 98th percentile of the maxima, so one spike
    # does not flatten the day; never below 1.5 times the highest median.
    top = max(maxes[min(len(maxes) - 1, int(len(maxes) * 0.98))] if maxes else 0.0,
              1.5 * max(medians) if medians else 0.0) * 1000 or 10.0
    step = nice_step(top)
    y_max = math.ceil(top / step) * step
    c.y_ticks = [(c.plot_bottom - v / y_max * ph, fmt.number(round(v, 3)))
                 for v in (i * step for i in range(round(y_max / step) + 1))]

    def x(t: float) -> float:
        return c.left + (min(max(t, start), end) - start) / (end - start) * pw

    def y(seconds: float) -> float:
        return c.plot_bottom - min(seconds * 1000, y_max) / y_max * ph

    # A bucket is drawn as wide as the usual gap between buckets (probes that measure
    # less often than once a minute), and joined to the next one unless data is missing.
    gaps = [b.bucket_start - a.bucket_start for a, b in itertools.pairwise(rows)]
    width = max(resolution, min(statistics.median(gaps) if gaps else resolution,
                                10 * resolution))
    band, lost = [], []
    lines: dict[str, list[str]] = {}
    previous = None  # (bucket_start, y of its median)
    for r in rows:
        x0, x1 = x(r.bucket_start), x(r.bucket_start + width)
        if r.rtt_min_s is not None and r.rtt_max_s is not None:
            y_hi, y_lo = y(r.rtt_max_s), y(r.rtt_min_s)
            if y_lo - y_hi < 1:
                y_hi, y_lo = y_hi - 0.5, y_lo + 0.5
            band.append(f"M{x0:.1f} {y_hi:.1f}H{x1:.1f}V{y_lo:.1f}H{x0:.1f}Z")
        cls = loss_class(loss_ratio(r))
        if r.rtt_median_s is None:
            if r.sent:  # nothing came back: a red mark along the top
                lost.append(f"M{x0:.1f} {c.top}H{max(x1, x0 + 1):.1f}V{c.top + 6}"
                            f"H{x0:.1f}Z")
            previous = None
            continue
        ym = y(r.rtt_median_s)
        joined = previous is not None and r.bucket_start - previous[0] <= 1.5 * width
        path = (f"M{x0:.1f} {previous[1]:.1f}V{ym:.1f}" if joined else f"M{x0:.1f} {ym:.1f}")
        lines.setdefault(cls, []).append(f"{path}H{max(x1, x0 + 1):.1f}")
        previous = (r.bucket_start, ym)
    c.band, c.lost = "".join(band), "".join(lost)
    c.lines = {cls: "".join(parts) for cls, parts in sorted(lines.items())}

    # Time axis in UTC: every 3 hours over a day, every midnight over a week.
    tick = 3 * 3600 if span == "day" else DAY
    t = math.ceil(start / tick) * tick
    while t <= end:
        moment = datetime.fromtimestamp(t, UTC)
        label = (moment.strftime("%H:%M") if span == "day"
                 else format_skeleton("MMMEd", moment, locale=fmt.lang))
        c.x_ticks.append((x(t), label))
        t += tick
    return c
