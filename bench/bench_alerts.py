"""Part "alerts": seconds from a mission's link being cut to the outage e-mail, ours next
to the common peer setup, in one run on one lab.

Both paths share one Prometheus (scrape and evaluation every 15 s, as deploy/prometheus/
ships) and one Alertmanager (configured from the inventory by our generator: group_wait
5 s), and deliver to one SMTP sink, all in the lab's centre namespace:

- ours: a probe in each mission checks a lab target every 5 s and pushes to the collector;
  the link is cut silently (packets dropped both ways), the collector turns the silence
  into `unknown` after 3 intervals and posts MissionProbeSilent to Alertmanager itself
  (Prometheus's rule is the backup path);
- peer: prometheus-blackbox-exporter at the centre pings each mission's address through
  the same Prometheus, and the rule `probe_success == 0` with `for: 30s` fires. Its alerts
  carry mission="<CODE>-peer", so that Alertmanager groups them apart from ours and
  both pay the same group_wait.

Missions are cut together, several rounds in a row; before the next round every alert
must have resolved (and its e-mail arrived), so each round starts fresh groups.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.blackbox import LISTEN as BLACKBOX_LISTEN
from bench.blackbox import PROGRAM as BLACKBOX
from bench.blackbox import Blackbox
from bench.common import BenchError, Goal, PartResult, ensure_programs, quantile, table
from tests.support.alerting import CENTRE_MAIL, alert_lab
from tests.support.lab.netns import Lab

MISSIONS = ("FRA", "GBR", "ESP", "ITA", "DEU")
GOAL_P95_S = 30.0
CHECK_INTERVAL_S = 5.0
PEER_RULES = """\
groups:
  - name: peer
    rules:
      - alert: PeerProbeDown
        expr: probe_success == 0
        for: 30s
        labels: {severity: critical, scope: mission}
        annotations:
          summary: "{{ $labels.mission }}: blackbox probe failed"
"""


def _peer_scrape(lab: Lab) -> dict:
    return {
        "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["icmp"]},
        "scrape_timeout": "10s",
        "static_configs": [{"targets": [m.ipv4],
                            "labels": {"mission": f"{m.code}-peer"}} for m in lab.missions],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"target_label": "__address__", "replacement": BLACKBOX_LISTEN},
        ],
    }


def _first_outage(sink, code: str, after: float) -> float | None:
    prefix = f"Outage: {code}:"
    times = [m.received_at for m in sink.received(CENTRE_MAIL)
             if m.subject.startswith(prefix) and m.received_at > after]
    return min(times) if times else None


def _resolved(sink, code: str, after: float) -> bool:
    return any(m.subject.startswith(f"Resolved: {code}:") and m.received_at > after
               for m in sink.received(CENTRE_MAIL))


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _both(found, sink, code: str, after: float) -> bool:
    """`found` is true for our alert of mission `code` and for the peer's."""
    return bool(found(sink, code, after) and found(sink, f"{code}-peer", after))


def _one_round(lab: Lab, sink, batch: list) -> list[tuple[float, float]]:
    """Cuts the missions together; (ours, peer) seconds to the outage e-mail of each, once
    every alert has resolved again after the restore."""
    cut_at = time.time()
    for m in batch:
        lab.cut(m)
    _wait(lambda: all(_both(_first_outage, sink, m.code, cut_at) for m in batch), 180,
          "every outage e-mail")
    got = [(_first_outage(sink, m.code, cut_at) - cut_at,
            _first_outage(sink, f"{m.code}-peer", cut_at) - cut_at) for m in batch]
    restored_at = time.time()
    for m in batch:
        lab.restore(m)
    _wait(lambda: all(_both(_resolved, sink, m.code, restored_at) for m in batch), 240,
          "every resolved e-mail")
    return got


def run(cuts: int = 10) -> PartResult:
    result = PartResult("alerts")
    missing = ensure_programs(BLACKBOX, "prometheus", "prometheus-alertmanager")
    if missing:
        raise BenchError(f"missing {', '.join(missing)}")
    rounds = -(-cuts // len(MISSIONS))
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-alerts-"))
    ours: list[float] = []
    peer: list[float] = []
    lab = Lab()
    try:
        missions = [lab.add_mission(code) for code in MISSIONS]
        target = lab.add_target()
        lab.start_responders(tcp_ports=())
        blackbox = Blackbox(lab, lab.centre, workdir)  # at the centre, as the peer runs it
        peer_rules = workdir / "peer.rules.yml"
        peer_rules.write_text(PEER_RULES)
        check = {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4,
                 "interval_s": CHECK_INTERVAL_S, "count": 3, "timeout_s": 1}
        try:
            with alert_lab(lab, workdir, missions, [check], interval="15s", group_wait_s=5,
                           group_interval_s=10, resend_s=10,
                           scrape_configs=[_peer_scrape(lab)],
                           rule_files=[peer_rules]) as stack:
                prom, sink = stack.prometheus, stack.sink
                prom.wait_for_targets_up(timeout=90)
                _wait(lambda: len(prom.query("unhindered_mission_access_up == 1"))
                      == len(MISSIONS), 120, "every mission up")
                done = 0
                for n in range(rounds):
                    batch = missions[:min(len(missions), cuts - done)]
                    got = _one_round(lab, sink, batch)
                    ours += [o for o, _p in got]
                    peer += [p for _o, p in got]
                    done += len(batch)
                    print(f"  round {n + 1}/{rounds}: ours, peer (s): "
                          + "; ".join(f"{o:.1f}, {p:.1f}" for o, p in got), flush=True)
                    time.sleep(5)  # let Alertmanager drop the resolved groups
        finally:
            blackbox.stop()
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [[name, str(len(values)), f"{quantile(values, 0.5):.1f}",
             f"{quantile(values, 0.95):.1f}", f"{min(values):.1f}", f"{max(values):.1f}"]
            for name, values in (("ours (collector -> Alertmanager)", ours),
                                 ("peer (blackbox + for: 30s)", peer))]
    result.text = (f"cut to e-mail, seconds ({len(ours)} cuts; probe interval "
                   f"{CHECK_INTERVAL_S:g} s, Prometheus 15 s, group_wait 5 s)\n"
                   + table(["path", "cuts", "p50", "p95", "min", "max"], rows))
    p95, peer_p95 = quantile(ours, 0.95), quantile(peer, 0.95)
    result.goals.append(Goal(f"cut-to-e-mail p95 <= {GOAL_P95_S:g} s", f"{p95:.1f} s",
                             f"{GOAL_P95_S:g} s", f"{p95 / GOAL_P95_S:.2f}x",
                             p95 <= GOAL_P95_S))
    result.goals.append(Goal("cut-to-e-mail p95 below the peer's", f"{p95:.1f} s",
                             f"{peer_p95:.1f} s (blackbox, for: 30s)",
                             f"{p95 / peer_p95:.2f}x", p95 < peer_p95))
    return result
