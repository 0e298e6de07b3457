"""Uptime reports against hand-computed figures, on SQLite and PostgreSQL.

Every scenario goes through the collector's own write path: measurements stored
(store_batch), folded into state intervals (Timelines, with silence ticks), rolled up
(Rollups.run); the report then reads only intervals and day rollups. The hysteresis is
set to follow each round (fail_k = window_n = recover_m = 1), and each change is kept at
the round that decided it (`placed=False`), so that each state change is at a round's
time and the expected seconds can be worked out by hand; by default the collector places
it between the rounds, from their evidence (docs/states.md), which
tests/netlab/test_report_ground_truth.py holds against known cuts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from collector.inventory.sites import Inventory
from collector.report.compute import compute
from collector.report.formats import gettext_for, spreadsheet_safe, to_csv, to_json
from collector.report.html import to_html
from collector.report.pdf import to_pdf
from collector.report.period import period_of
from collector.report.policy import CountingPolicy
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from collector.store.rollups import Rollups
from tests.unit.test_measurement import icmp
from unhindered.measurement import Batch

POLICY = Policy(fail_k=1, window_n=1, recover_m=1, silent_intervals=3, placed=False)
EXCLUDE, DOWN = CountingPolicy("exclude"), CountingPolicy("down")
H, D = 3600.0, 86_400.0


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def inventory(*windows: dict, code: str = "FRA") -> Inventory:
    return Inventory.model_validate({"missions": [{
        "code": code, "name": "France", "kind": "member_state", "duty_station": "New York",
        "city": "New York", "coordinates": {"lat": 40.75, "lon": -73.97},
        "maintenance": list(windows)}]})


class Fleet:
    """Probes reporting through the collector's write path."""

    def __init__(self, store) -> None:
        self.store = store
        self.timelines = Timelines(store, lambda _mission: POLICY)
        self.seq = 0

    def rounds(self, start: float, end: float, interval: float, bad=(),
               rtt=lambda _t: 0.02, mission="FRA", check="internet-icmp",
               received_at: float | None = None) -> None:
        """Rounds every `interval` from start to end (both included); those inside one of
        the `bad` (from, to) spans fail."""
        times = []
        t = start
        while t <= end:
            times.append(t)
            t += interval
        for i in range(0, len(times), 1000):
            measurements = []
            for t in times[i:i + 1000]:
                self.seq += 1
                good = not any(a <= t < b for a, b in bad)
                figures = ({"sent": 1, "received": 1, "loss_ratio": 0, "rtt_min_s": rtt(t),
                            "rtt_median_s": rtt(t), "rtt_mean_s": rtt(t), "rtt_max_s": rtt(t),
                            "samples_s": [rtt(t)]} if good else
                           {"sent": 1, "received": 0, "loss_ratio": 1.0})
                measurements.append(icmp(
                    seq=self.seq, probe_id=f"{mission.lower()}-1", mission=mission,
                    check_id=check, started_at=datetime.fromtimestamp(t, UTC), ok=good,
                    reason=None if good else "timeout", figures=figures, interval_s=interval))
            batch = Batch.model_validate({
                "protocol": 1, "probe_id": f"{mission.lower()}-1", "mission": mission,
                "outbox_id": "a" * 32, "measurements": measurements})
            new = self.store.store_batch(batch, received_at=received_at or times[-1]).new
            self.timelines.apply(new)


def report(store, inv, policy=EXCLUDE, now=None, **when):
    return compute(store, inv, period_of(**when), policy, now=now)


def only(rep):
    [mission] = rep.missions
    [check] = mission.checks
    # The mission's access follows its only check.
    assert mission.figures.seconds == check.figures.seconds
    return check.figures


def test_an_outage_across_a_month_boundary_is_split(any_store):
    fleet = Fleet(any_store)
    fleet.rounds(at("2026-01-31T00:00"), at("2026-02-01T12:00"), 600,
                 bad=[(at("2026-01-31T23:00"), at("2026-02-01T01:00"))])
    inv, now = inventory(), at("2026-02-01T12:00")

    jan = only(report(any_store, inv, now=now, month="2026-01"))
    assert jan.seconds == {"up": 23 * H, "degraded": 0, "down": H, "unknown": 0}
    assert jan.unmonitored_s == 30 * D  # January 1 to 30: no check yet
    assert jan.uptime == pytest.approx(23 / 24)
    assert [(o.start, o.end, o.counted_s) for o in jan.outages] == [
        (at("2026-01-31T23:00"), at("2026-02-01T00:00"), H)]

    feb = only(report(any_store, inv, now=now, month="2026-02"))
    assert feb.length_s == 12 * H  # to now: February is not over
    assert feb.seconds == {"up": 11 * H, "degraded": 0, "down": H, "unknown": 0}
    assert [(o.start, o.end) for o in feb.outages] == [
        (at("2026-02-01T00:00"), at("2026-02-01T01:00"))]
    assert feb.coverage == 1.0

    year = only(report(any_store, inv, now=now, year=2026))
    assert [o.counted_s for o in year.outages] == [2 * H]  # whole inside the year
    assert year.mttr_s == 2 * H and year.longest_s == 2 * H
    assert year.mtbf_s == 34 * H  # reachable time per outage


def test_maintenance_overlapping_an_outage_is_left_out(any_store):
    fleet = Fleet(any_store)
    fleet.rounds(at("2026-03-10T00:00"), at("2026-03-11T00:00"), 600,
                 bad=[(at("2026-03-10T10:00"), at("2026-03-10T12:00")),
                      (at("2026-03-10T20:00"), at("2026-03-10T20:30"))])
    inv = inventory(
        # Overlaps the second hour of the first outage.
        {"start": "2026-03-10T11:00:00+00:00", "end": "2026-03-10T13:00:00+00:00"},
        # Holds the whole second outage: no outage at all.
        {"start": "2026-03-10T19:00:00+00:00", "end": "2026-03-10T21:00:00+00:00"})
    f = only(report(any_store, inv, now=at("2026-03-12T00:00"), start="2026-03-10",
                    end="2026-03-10"))
    assert f.maintenance_s == 4 * H
    assert f.seconds == {"up": D - 4 * H - H, "degraded": 0, "down": H, "unknown": 0}
    assert f.uptime == pytest.approx(19 / 20)
    assert [(o.start, o.end, o.counted_s) for o in f.outages] == [
        (at("2026-03-10T10:00"), at("2026-03-10T12:00"), H)]


@pytest.mark.parametrize("policy", [EXCLUDE, DOWN], ids=["unknown-excluded",
                                                          "unknown-as-down"])
def test_a_probe_silent_for_a_day(any_store, policy):
    fleet = Fleet(any_store)
    fleet.rounds(at("2026-05-01T00:00"), at("2026-05-02T00:00"), 600)
    fleet.rounds(at("2026-05-03T00:00"), at("2026-05-04T00:00"), 600)
    f = only(report(any_store, inventory(), policy, now=at("2026-06-01T00:00"),
                    start="2026-05-01", end="2026-05-03"))
    # Unknown from the last round plus 3 intervals of silence to the next round.
    silent = at("2026-05-03T00:00") - at("2026-05-02T00:30")
    assert f.seconds == {"up": 3 * D - silent, "degraded": 0, "down": 0, "unknown": silent}
    assert f.coverage == pytest.approx((3 * D - silent) / (3 * D))
    if policy is EXCLUDE:
        assert f.uptime == 1.0 and f.outages == []
    else:
        assert f.uptime == pytest.approx((3 * D - silent) / (3 * D))
        assert [(o.start, o.counted_s) for o in f.outages] == [(at("2026-05-02T00:30"),
                                                                 silent)]


def test_a_collector_outage_with_backfill_counts_as_measured(any_store):
    fleet = Fleet(any_store)
    fleet.rounds(at("2026-06-01T00:00"), at("2026-06-01T10:00"), 600)
    # The collector stops at 10:00 and starts again at 12:00: rebuilt from the store,
    # its first silence check turns the probe's two quiet hours into unknown.
    restarted = Timelines(any_store, lambda _mission: POLICY)
    restarted.load(any_store.latest_per_check())
    restarted.tick(at("2026-06-01T12:00"))
    fleet.timelines = restarted
    inv = inventory()
    before = only(report(any_store, inv, now=at("2026-06-01T12:00"), start="2026-06-01",
                         end="2026-06-01"))
    assert before.seconds["unknown"] == H + 1800  # from 10:30 (3 intervals) to now

    # The probe kept measuring (one real 20-minute cut at 11:00) and sends its backlog.
    fleet.rounds(at("2026-06-01T10:10"), at("2026-06-01T14:00"), 600,
                 bad=[(at("2026-06-01T11:00"), at("2026-06-01T11:20"))],
                 received_at=at("2026-06-01T12:00"))
    f = only(report(any_store, inv, now=at("2026-06-01T14:00"), start="2026-06-01",
                    end="2026-06-01"))
    assert f.seconds == {"up": 14 * H - 1200, "degraded": 0, "down": 1200, "unknown": 0}
    assert [(o.start, o.counted_s) for o in f.outages] == [(at("2026-06-01T11:00"), 1200)]


def test_a_leap_year_february(any_store):
    fleet = Fleet(any_store)
    slow = (at("2028-02-28T00:00"), at("2028-03-01T00:00"))  # the last two days
    fleet.rounds(at("2028-02-01T00:00"), at("2028-03-01T00:00"), 3600,
                 bad=[(at("2028-02-29T12:00"), at("2028-02-29T13:00"))],
                 rtt=lambda t: 0.05 if slow[0] <= t < slow[1] else 0.02)
    Rollups(any_store).run(now=at("2028-03-02T00:00"))
    rep = report(any_store, inventory(), now=at("2028-03-02T00:00"), month="2028-02")
    f = only(rep)
    assert f.length_s == 29 * D
    assert f.seconds == {"up": 29 * D - H, "degraded": 0, "down": H, "unknown": 0}
    assert f.uptime == pytest.approx(1 - 1 / 696)
    [month] = rep.missions[0].checks[0].monthly
    assert month.month == "2028-02"
    # 695 rounds answered of the 696 sent in February (the round of March 1 is March's):
    # 648 at 20 ms, the last two days' 47 at 50 ms. The 95th percentile (rank 661) is in
    # those two days, though every day's own 95th percentile is its only value; the
    # histograms keep each value within 2.5 %.
    assert month.rtt_median_s == pytest.approx(0.02, rel=0.025)
    assert month.rtt_p95_s == pytest.approx(0.05, rel=0.025)
    assert month.samples == 695
    assert month.loss == pytest.approx(1 / 696)


def test_a_month_in_a_time_zone_across_dst(any_store):
    fleet = Fleet(any_store)
    fleet.rounds(at("2026-02-28T22:00"), at("2026-04-01T00:00"), 1800, bad=[
        # 01:30 CET to 03:30 CEST on the night of the change: one hour, not two.
        (at("2026-03-29T00:30"), at("2026-03-29T01:30")),
        # 23:00 to 01:00 Paris time on March 31: half of it is April's in Paris.
        (at("2026-03-31T21:00"), at("2026-03-31T23:00"))])
    now = at("2026-04-02T00:00")
    paris = report(any_store, inventory(), now=now, month="2026-03", tz="Europe/Paris")
    f = only(paris)
    # March 1 00:00 CET = Feb 28 23:00 UTC; April 1 00:00 CEST = March 31 22:00 UTC.
    assert (paris.period.start, paris.period.end) == (at("2026-02-28T23:00"),
                                                      at("2026-03-31T22:00"))
    assert f.length_s == 31 * D - H
    assert f.seconds["down"] == 2 * H
    assert [(o.start, o.end, o.counted_s) for o in f.outages] == [
        (at("2026-03-29T00:30"), at("2026-03-29T01:30"), H),
        (at("2026-03-31T21:00"), at("2026-03-31T22:00"), H)]
    utc = only(report(any_store, inventory(), now=now, month="2026-03"))
    assert utc.seconds["down"] == 3 * H  # in UTC the whole last outage is March's


def test_fleet_summary_and_every_format(any_store, tmp_path):
    fleet = Fleet(any_store)
    start, end = at("2026-07-01T00:00"), at("2026-07-02T00:00")
    codes = ["FRA", "DEU", "ITA", "ESP"]
    for i, code in enumerate(codes):
        # A shared target down at three missions at once, plus ITA's own hour.
        bad = [(at("2026-07-01T06:00"), at("2026-07-01T07:00"))] if code != "ESP" else []
        if code == "ITA":
            bad.append((at("2026-07-01T15:00"), at("2026-07-01T16:00")))
        fleet.rounds(start, end, 600, bad=bad, mission=code, check="dns-root",
                     rtt=lambda _t, i=i: 0.01 * (i + 1))
    Rollups(any_store).run(now=end + D)
    inv = Inventory.model_validate({"missions": [
        {**inventory(code=c).missions[0].model_dump(mode="json"), "name": f"Mission {c}"}
        for c in codes]})
    rep = compute(any_store, inv, period_of(start="2026-07-01", end="2026-07-01"),
                  EXCLUDE, now=end + D)
    uptimes = {m.code: m.figures.uptime for m in rep.missions}
    assert uptimes == pytest.approx({"DEU": 23 / 24, "ESP": 1.0, "FRA": 23 / 24,
                                     "ITA": 22 / 24})
    assert rep.fleet.median_uptime == pytest.approx(23 / 24)
    assert [m.code for m in rep.fleet.worst] == ["ITA", "DEU", "FRA", "ESP"]
    assert [(t.check_id, t.start, t.end, t.peak_missions, t.of_missions)
            for t in rep.fleet.target_outages] == [
        ("dns-root", at("2026-07-01T06:00"), at("2026-07-01T07:00"), 3, 4)]

    _ = gettext_for("en")
    rows = [line for line in to_csv(rep, _).splitlines() if not line.startswith("#")]
    assert rows[0].startswith("mission,name,uptime_pct") and len(rows) == 5
    assert any(row.startswith("ITA,Mission ITA,91.6667,100.0000,79200.0,0.0,7200.0,")
               for row in rows)
    assert to_csv(rep, _).startswith("# Period: 2026-07-01 to 2026-07-01")
    data = json.loads(to_json(rep, _))
    assert data["policy"]["unknown"] == "exclude" and data["methodology"]
    ita = next(m for m in data["missions"] if m["mission"] == "ITA")
    assert ita["outages"] == 2
    assert ita["checks"][0]["monthly"][0]["rtt_median_s"] == pytest.approx(0.03, rel=0.025)
    html = to_html(rep, inv)
    assert html.count("<svg") == 2 + len(codes)  # uptime, latency, one timeline each
    assert "Methodology" in html and "src=" not in html and "href=\"http" not in html
    pdf = to_pdf(rep, inv)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5_000


# --- the command line ---

def test_the_report_command(any_store, tmp_path, capsys):
    from collector.cli import main

    fleet = Fleet(any_store)
    fleet.rounds(at("2026-08-01T00:00"), at("2026-08-02T00:00"), 600,
                 bad=[(at("2026-08-01T08:00"), at("2026-08-01T08:30"))])
    fleet.timelines.tick(at("2026-08-03T00:00"))  # the probe fell silent: unknown at 00:30
    db = ["--database", any_store.url]
    assert main([*db, "report", "--month", "2026-08", "--mission", "FRA"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("FRA,"))
    # Up from Aug 1 00:00 to Aug 2 00:30 but for the half hour down; unknown left out.
    assert row.split(",")[2] == f"{D / (D + 1800) * 100:.4f}"
    assert "# Time in state unknown" in out and "left out of the denominator" in out

    assert main([*db, "report", "--year", "2026", "--unknown", "down", "-o",
                 str(tmp_path / "y.json")]) == 0
    data = json.loads((tmp_path / "y.json").read_text())
    assert data["policy"]["unknown"] == "down"
    assert [m["mission"] for m in data["missions"]] == ["FRA"]
    assert main([*db, "report", "--quarter", "2026-Q3", "--tz", "America/New_York",
                 "-o", str(tmp_path / "q.pdf")]) == 0
    assert (tmp_path / "q.pdf").read_bytes().startswith(b"%PDF-")

    assert main([*db, "report"]) == 2
    assert "exactly one of --year" in capsys.readouterr().err
    assert main([*db, "report", "--year", "2026", "--tz", "Mars/Olympus"]) == 2
    assert "IANA time zone" in capsys.readouterr().err
    assert main([*db, "report", "--quarter", "2026-Q5"]) == 2
    assert "expected YEAR-QN" in capsys.readouterr().err
    assert main([*db, "report", "--year", "2026", "--format", "pdf"]) == 2
    assert main([*db, "report", "--year", "2026", "--lang", "de"]) == 2
    assert "expected one of ar, zh, en, fr, ru, es" in capsys.readouterr().err


# --- in a real browser ---

@pytest.mark.slow
async def test_chromium_renders_the_html_report(tmp_path):
    """The HTML report of a small fleet, served on loopback to headless Chromium: the
    screenshot is kept as docs/screenshots/report.png (UNHINDERED_SAVE_SCREENSHOTS=1)."""
    import functools
    import os
    import shutil
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from collector.store.database import Store
    from tests.integration.test_status_page import SCREENSHOTS, browse, png_size

    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.migrate()
    fleet = Fleet(store)
    start, end = at("2026-01-01T00:00"), at("2026-01-15T00:00")
    codes = ["FRA", "DEU", "ITA", "ESP", "BRA", "KEN"]
    for i, code in enumerate(codes):
        bad = [(start + D * (i + 1) + H * i, start + D * (i + 1) + H * i + 1800 * (i + 1))]
        if code == "ITA":
            bad.append((start + 9 * D, start + 9 * D + 5 * H))
        for check in ("internet-icmp", "un-https"):
            fleet.rounds(start, end, 1800, bad=bad, mission=code, check=check,
                         rtt=lambda _t, i=i: 0.01 * (i + 1))
    Rollups(store).run(now=end + D)
    inv = Inventory.model_validate({"missions": [
        {**inventory(code=c).missions[0].model_dump(mode="json"), "name": f"Mission {c}"}
        for c in codes]})
    rep = compute(store, inv, period_of(month="2026-01"), EXCLUDE, now=end)
    store.close()
    site = tmp_path / "site"
    site.mkdir()
    (site / "report.html").write_text(to_html(rep, inv), encoding="utf-8")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = tmp_path / "report.png"
    try:
        _out, log = await browse(f"http://127.0.0.1:{server.server_port}/report.html",
                                 tmp_path, f"--screenshot={target}", window="1200,1600")
    finally:
        server.shutdown()
        server.server_close()
    assert target.exists(), f"chromium wrote no screenshot: {log[-2000:]}"
    assert png_size(target) == (1200, 1600)
    assert target.stat().st_size > 40_000, "an all but empty screenshot"
    if os.environ.get("UNHINDERED_SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, SCREENSHOTS / "report.png")


@pytest.mark.parametrize(("text", "cell"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2", "'-2"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("Mission of France", "Mission of France"),
    ("", "")])
def test_csv_text_cells_never_start_a_formula(text, cell):
    assert spreadsheet_safe(text) == cell
