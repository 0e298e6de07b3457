"""Writing a report: the methodology text every format carries, and CSV and JSON (one row
per mission; JSON adds each check and its months). Human text goes through gettext."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime

from collector.report.compute import Figures, Report
from unhindered.i18n import load_translations

Gettext = Callable[[str], str]


def gettext_for(lang: str) -> Gettext:
    return load_translations(lang).gettext


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def methodology(report: Report, _: Gettext) -> list[str]:
    """The counting policy, in words: printed in every report."""
    p = report.period
    unknown = (_("Time in state unknown (no results reached the collector and none were "
                 "backfilled) is reported apart and left out of the denominator.")
               if report.policy.unknown == "exclude" else
               _("Time in state unknown (no results reached the collector and none were "
                 "backfilled) counts as down time, and a silent stretch as an outage."))
    lines = [
        _("Period: {label}, from {start} to {end} (local midnights in {tz}, converted to "
          "UTC; daylight saving time changes are honoured).").format(
            label=p.label, start=iso(p.start), end=iso(p.end), tz=p.timezone),
        _("Uptime is time-based: the time a target was reachable (state up or degraded) "
          "divided by the time counted, i.e. up + degraded + down. States come from the "
          "collector's state intervals (docs/states.md), derived from the probes' "
          "measurement times with hysteresis, never from counting rounds."),
        _("Maintenance windows from the inventory are left out of the denominator; time in "
          "maintenance is reported apart. An outage partly inside maintenance is charged "
          "only for its part outside; one wholly inside is no outage."),
        unknown,
        _("When only the collector was down, the probes keep measuring and send their "
          "backlog when it is back; the collector rewrites the intervals from the "
          "measurement times, so that time counts as what the probes measured, not "
          "against the mission."),
        _("Outages are split at the period's boundaries: only the part inside the period "
          "counts. MTTR is the mean outage length; MTBF is reachable time divided by the "
          "number of outages."),
        _("Coverage is the share of the period with a known state (up, degraded or "
          "down). Time before a check's first result, and after its probe stopped running "
          "it (retired), is not monitored and not counted."),
        _("A mission's uptime is that of its access over all groups of checks: down when "
          "any group (e.g. internet) has none of its targets reachable (docs/states.md)."),
        _("Monthly RTT: the median and 95th percentile of every RTT sample of the month, "
          "from daily histograms with bins 5 percent wide (within 2.5 percent of the exact "
          "value); a UTC day belongs to the month of its middle. Loss is exact: echo "
          "requests lost over sent."),
    ]
    if report.through < p.end:
        lines.append(_("The period is not over: figures run to {through}.").format(
            through=iso(report.through)))
    return lines


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.4f}"


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


CSV_COLUMNS = ("mission", "name", "uptime_pct", "coverage_pct", "up_s", "degraded_s",
               "down_s", "unknown_s", "maintenance_s", "unmonitored_s", "outages",
               "longest_outage_s", "mttr_s", "mtbf_s")


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not run: one starting with = + - @ (or a tab or
    carriage return) is a formula to Excel and LibreOffice, so it gets a leading
    apostrophe, as OWASP advises for CSV exports. Names come from the inventory."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(code: str, name: str, f: Figures) -> list:
    s = f.seconds
    return [spreadsheet_safe(code), spreadsheet_safe(name), _pct(f.uptime), _pct(f.coverage),
            _opt(s["up"]), _opt(s["degraded"]), _opt(s["down"]), _opt(s["unknown"]),
            _opt(f.maintenance_s), _opt(f.unmonitored_s), len(f.outages), _opt(f.longest_s),
            _opt(f.mttr_s), _opt(f.mtbf_s)]


def to_csv(report: Report, _: Gettext) -> str:
    """One row per mission, after the methodology as '#' comment lines (read with e.g.
    pandas.read_csv(path, comment='#'))."""
    out = io.StringIO()
    for line in methodology(report, _):
        out.write(f"# {line}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in report.missions:
        writer.writerow(_csv_row(m.code, m.name, m.figures))
    return out.getvalue()


def _figures_json(f: Figures) -> dict:
    return {
        "uptime": f.uptime, "coverage": f.coverage,
        "seconds": {**{k: round(v, 3) for k, v in f.seconds.items()},
                    "maintenance": round(f.maintenance_s, 3),
                    "unmonitored": round(f.unmonitored_s, 3)},
        "outages": len(f.outages), "longest_outage_s": f.longest_s, "mttr_s": f.mttr_s,
        "mtbf_s": f.mtbf_s,
        "outage_list": [{"start": iso(o.start), "end": iso(o.end),
                         "counted_s": round(o.counted_s, 3)} for o in f.outages],
    }


def to_dict(report: Report, _: Gettext) -> dict:
    fleet = report.fleet
    return {
        "period": {"label": report.period.label, "timezone": report.period.timezone,
                   "start": iso(report.period.start), "end": iso(report.period.end),
                   "through": iso(report.through)},
        "generated_at": iso(report.generated_at),
        "policy": {"unknown": report.policy.unknown, "maintenance": "excluded",
                   "degraded": "counts as up", "collector_outage_with_backfill":
                   "counts as measured", "outages": "split at period boundaries"},
        "methodology": methodology(report, _),
        "missions": [{
            "mission": m.code, "name": m.name, **_figures_json(m.figures),
            "checks": [{
                "check": c.check_id, **_figures_json(c.figures),
                "monthly": [{"month": s.month, "rtt_median_s": s.rtt_median_s,
                             "rtt_p95_s": s.rtt_p95_s, "loss": s.loss,
                             "samples": s.samples} for s in c.monthly],
            } for c in m.checks],
        } for m in report.missions],
        "fleet": {
            "median_uptime": fleet.median_uptime,
            "distribution": dict(fleet.distribution),
            "worst": [{"mission": m.code, "uptime": m.figures.uptime} for m in fleet.worst],
            "target_outages": [{"check": t.check_id, "start": iso(t.start), "end": iso(t.end),
                                "peak_missions": t.peak_missions, "of": t.of_missions}
                               for t in fleet.target_outages],
            "monthly_rtt_median_s": dict(fleet.monthly_rtt_median_s),
        },
    }


def to_json(report: Report, _: Gettext) -> str:
    return json.dumps(to_dict(report, _), indent=1, ensure_ascii=False) + "\n"
