"""The PDF report, with fpdf2 (no browser): the same content as the HTML, the same SVG
charts drawn by fpdf2, a Unicode font where the system has one (DejaVu)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from fpdf import FPDF

from collector.inventory.sites import Inventory
from collector.report import charts
from collector.report.compute import Report
from collector.report.formats import gettext_for, iso, methodology
from collector.report.html import duration, make_charts, pct, ranked_uptimes

UPTIME_BARS_PER_PAGE = 50
UNICODE_FONTS = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                 Path("/usr/share/fonts/TTF/DejaVuSans.ttf"))
# The core PDF fonts know Latin-1 only: what the report writes outside it, spelled out.
_LATIN1 = str.maketrans({"≥": ">=", "\u2013": "-", "—": "-", "·": "-", "…": "..."})


class _Document(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        font = next((p for p in UNICODE_FONTS if p.is_file()), None)
        self.unicode = font is not None
        if font is not None:
            self.add_font("body", "", str(font))
            bold = font.with_name("DejaVuSans-Bold.ttf")
            self.add_font("body", "B", str(bold if bold.is_file() else font))
            self.family = "body"
        else:
            self.family = "helvetica"
        self.set_auto_page_break(True, margin=15)

    def text_of(self, text: str) -> str:
        if self.unicode:
            return text
        return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")

    def para(self, text: str, size: float = 10, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.multi_cell(0, size * 0.5, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def table_rows(self, header: list[str], rows: list[list[str]]) -> None:
        self.set_font(self.family, "", 8)
        with self.table(text_align="LEFT", first_row_as_headings=True,
                        line_height=4.2) as table:
            for cells in [header, *rows]:
                row = table.row()
                for cell in cells:
                    row.cell(self.text_of(cell))
        self.ln(2)

    def svg(self, svg: str, width: float = 180) -> None:
        # fpdf2 draws no <title> (it is the chart's accessible name in the HTML).
        svg = re.sub(r"<title>.*?</title>", "", svg, count=1)
        self.image(io.BytesIO(svg.encode()), w=width)
        self.ln(2)


def to_pdf(report: Report, inventory: Inventory, lang: str = "en") -> bytes:
    _ = gettext_for(lang)
    pictures = make_charts(report, inventory, _)
    doc = _Document()
    doc.add_page()
    doc.para(_("Uptime report %(period)s") % {"period": report.period.label}, 18, True)
    doc.para(_("Period %(start)s to %(end)s (%(tz)s); generated %(generated)s; %(count)s "
               "missions.") % {"start": iso(report.period.start), "end": iso(report.period.end),
                               "tz": report.period.timezone,
                               "generated": iso(report.generated_at),
                               "count": len(report.missions)}, 9)
    fleet = report.fleet
    doc.para(_("Fleet summary"), 14, True)
    doc.para(_("Median mission uptime: %(median)s.") % {"median": pct(fleet.median_uptime)})
    doc.table_rows([_("Uptime"), _("Missions")],
                   [[label, str(count)] for label, count in fleet.distribution])
    doc.para(_("The ten lowest"), 12, True)
    doc.table_rows([_("Mission"), _("Uptime"), _("Down"), _("Outages"), _("Longest")],
                   [[f"{m.code} {m.name}", pct(m.figures.uptime),
                     duration(m.figures.down_counted_s), str(len(m.figures.outages)),
                     duration(m.figures.longest_s)] for m in fleet.worst])
    doc.para(_("Fleet-wide target outages"), 12, True)
    if fleet.target_outages:
        doc.table_rows([_("Check"), _("From"), _("To"), _("Length"),
                        _("Missions down (peak)")],
                       [[t.check_id, iso(t.start), iso(t.end), duration(t.end - t.start),
                         f"{t.peak_missions} / {t.of_missions}"] for t in fleet.target_outages])
    else:
        doc.para(_("None: no check was down at half of its missions at once."))
    doc.svg(pictures.latency)
    # The uptime chart in pages of 50 missions, on one axis: a fleet's would not fit one.
    ranked = ranked_uptimes(report)
    floor = charts.axis_floor([u for _code, u in ranked])
    for i in range(0, len(ranked), UPTIME_BARS_PER_PAGE):
        doc.add_page()
        doc.svg(charts.uptime_bars(ranked[i:i + UPTIME_BARS_PER_PAGE],
                                   _("Uptime by mission, worst first"), floor=floor))
    doc.add_page()
    doc.para(_("Missions"), 14, True)
    doc.table_rows(
        [_("Mission"), _("Uptime"), _("Coverage"), _("Down"), _("Degraded"),
         _("Maintenance"), _("Unknown"), _("Outages"), _("Longest"), _("MTTR"), _("MTBF")],
        [[m.code, pct(f.uptime), pct(f.coverage, 1), duration(f.seconds["down"]),
          duration(f.seconds["degraded"]), duration(f.maintenance_s),
          duration(f.seconds["unknown"]), str(len(f.outages)), duration(f.longest_s),
          duration(f.mttr_s), duration(f.mtbf_s)]
         for m in report.missions for f in [m.figures]])
    for m in report.missions:
        if not m.figures.outages:
            continue
        doc.para(f"{m.code} - {m.name}: {pct(m.figures.uptime)}", 11, True)
        doc.svg(pictures.timelines[m.code])
        doc.table_rows([_("From"), _("To"), _("Counted")],
                       [[iso(o.start), iso(o.end), duration(o.counted_s)]
                        for o in m.figures.outages])
    doc.add_page()
    doc.para(_("Methodology"), 14, True)
    for line in methodology(report, _):
        doc.para(line, 9)
    return bytes(doc.output())
