"""The HTML report: one self-contained file (inline CSS, inline SVG charts, no script, no
external reference), rendered from collector/templates/report.html through gettext."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from collector import TEMPLATES
from collector.inventory.sites import Inventory
from collector.report import charts
from collector.report.compute import Report
from collector.report.formats import iso, methodology
from unhindered.i18n import load_translations


def duration(seconds: float | None) -> str:
    """'3 d 04:05:06', '04:05:06', '—' for none: exact to the second, one form in every
    language."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} d {clock}" if days else clock


def pct(ratio: float | None, digits: int = 3) -> str:
    return "—" if ratio is None else f"{ratio * 100:.{digits}f} %"


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f}"


@dataclass(frozen=True)
class Charts:
    """The report's pictures as SVG text, shared by the HTML and the PDF."""

    uptime: str
    latency: str
    timelines: dict[str, str]  # mission code -> its outage timeline


def ranked_uptimes(report: Report) -> list[tuple[str, float]]:
    """(mission, uptime) of the missions with one, worst first."""
    return sorted(((m.code, m.figures.uptime) for m in report.missions
                   if m.figures.uptime is not None), key=lambda r: (r[1], r[0]))


def make_charts(report: Report, inventory: Inventory, _) -> Charts:
    lo, hi = report.period.start, report.through
    return Charts(
        charts.uptime_bars(ranked_uptimes(report), _("Uptime by mission, worst first")),
        charts.monthly_bars(report.fleet.monthly_rtt_median_s,
                            _("Monthly RTT: median over the fleet's checks")),
        {m.code: charts.timeline(m.figures.segments,
                                 inventory.schedule(m.code).windows_between(lo, hi), lo, hi,
                                 _("Outage timeline of {mission}").format(mission=m.code))
         for m in report.missions})


def to_html(report: Report, inventory: Inventory, lang: str = "en") -> str:
    translations = load_translations(lang)
    _ = translations.gettext
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations, newstyle=True)
    pictures = make_charts(report, inventory, _)
    return env.get_template("report.html").render(
        r=report, lang=lang, methodology=methodology(report, _), iso=iso,
        duration=duration, pct=pct, ms=ms, colours=charts.COLOURS,
        uptime_svg=Markup(pictures.uptime), latency_svg=Markup(pictures.latency),
        timeline_svg={k: Markup(v) for k, v in pictures.timelines.items()})
