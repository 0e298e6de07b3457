"""Part "alerts": seconds from an outage to its e-mail, ours next to the common peer setup,
in one run on one lab, at the shipped defaults of the probe and the collector.

Two cases, each timed for every mission:

- dark: the mission's link is cut silently (packets dropped both ways): the probe cannot
  report, the collector hears neither its results nor its heartbeats, turns the checks
  `unknown` after `states.probe_silent_s` and posts MissionProbeSilent to Alertmanager
  itself (Prometheus's rule is the backup path);
- target: the mission's traffic to its target is dropped while its link to the centre
  works: the probe's rounds fail (a failure and its confirmation rounds), it reports
  them, the check goes `down` and the collector posts MissionAccessDown.

Both paths share one Prometheus (scrape and evaluation every 15 s, as deploy/prometheus/
ships) and one Alertmanager (configured from the inventory by our generator: group_wait
5 s, as shipped), and deliver to one SMTP sink, all in the lab's centre namespace. The
peer is prometheus-blackbox-exporter with the rule `probe_success == 0` for 30 s: for
the dark case at the centre, pinging each mission's address; for the target case in each
mission, pinging the target, scraped by the centre's Prometheus. Its alerts carry
mission="<CODE>-peer" (dark) or "<CODE>-peer-target" (target), so that Alertmanager groups
them apart from ours and both pay the same group_wait.

Missions are cut in rounds, each at a random moment within one check interval (the probes
start together, so their rounds run nearly in step, and a real outage lands anywhere in a
round's cycle); before the next round every alert must have resolved (and its e-mail
arrived), so each round starts fresh groups.

`python -m bench alerts` runs both cases at the defaults; `python -m bench.bench_alerts`
takes --interval-s, --heartbeat-s, --cases and --cuts to time other settings.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bench.blackbox import LISTEN as BLACKBOX_LISTEN
from bench.blackbox import PROGRAM as BLACKBOX
from bench.blackbox import Blackbox
from bench.common import BenchError, Goal, PartResult, ensure_programs, quantile, table
from collector.config import AlertingSettings, StateSettings
from probes.config import CollectorSettings
from tests.support.alerting import CENTRE_MAIL, RULES, alert_lab
from tests.support.lab.netns import Lab
from unhindered.checks.icmp import IcmpCheck

MISSIONS = ("FRA", "GBR", "ESP", "ITA", "DEU")
GOAL_P95_S = 30.0
CASES = ("dark", "target")
PEER_SUFFIX = {"dark": "-peer", "target": "-peer-target"}
BLACKBOX_PORT = 9115
# The probe's reporting settings as shipped; the lab's quick ones (tests/support/spine.py)
# would make ours look faster than a real probe is.
SHIPPED = ("batch_max_age_s", "backoff_initial_s", "backoff_max_s", "timeout_s",
           "heartbeat_s")
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


def _rules_without_slo(workdir: Path) -> Path:
    """The project's alert rules without the availability budget's: they need weeks of
    history, and in a lab minutes old every cut burns the month's budget, so their alert
    would keep each mission's Alertmanager group firing from one round to the next."""
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"] = [g for g in rules["groups"] if g["name"] != "unhindered-slo"]
    path = workdir / "unhindered.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def _default(model, name: str):
    return model.model_fields[name].default


def _peer_scrapes(lab: Lab, targets: dict) -> list[dict]:
    centre = {
        "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["icmp"]},
        "scrape_timeout": "10s",
        "static_configs": [{"targets": [m.ipv4],
                            "labels": {"mission": f"{m.code}{PEER_SUFFIX['dark']}"}}
                           for m in lab.missions],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"target_label": "__address__", "replacement": BLACKBOX_LISTEN},
        ],
    }
    at_missions = [{
        "job_name": f"blackbox-{m.code}", "metrics_path": "/probe",
        "params": {"module": ["icmp"]}, "scrape_timeout": "10s",
        "static_configs": [{"targets": [targets[m.code].ipv4],
                            "labels": {"mission": f"{m.code}{PEER_SUFFIX['target']}"}}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"target_label": "__address__", "replacement": f"{m.ipv4}:{BLACKBOX_PORT}"},
        ],
    } for m in lab.missions]
    return [centre, *at_missions]


def _first(sink, word: str, code: str, after: float) -> float | None:
    prefix = f"{word}: {code}:"
    times = [m.received_at for m in sink.received(CENTRE_MAIL)
             if m.subject.startswith(prefix) and m.received_at > after]
    return min(times) if times else None


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _one_round(lab: Lab, sink, batch: list, case: str, targets: dict, spread_s: float
               ) -> list[tuple[float, float]]:
    """Cuts (or blocks the target of) each mission at a random moment of the next
    `spread_s` (its checks' interval: probes started together run their rounds in step, and
    an outage lands anywhere in a round's cycle); (ours, peer) seconds from each mission's
    own cut to its outage e-mail, once every alert has resolved again after the restore."""
    peer = PEER_SUFFIX[case]
    start = time.time()
    cuts = {}
    for offset, m in sorted((random.uniform(0, spread_s), m) for m in batch):
        time.sleep(max(0.0, start + offset - time.time()))
        if case == "dark":
            lab.cut(m)
        else:
            lab.block(m, targets[m.code])
        cuts[m.code] = time.time()
    names = [(m.code, f"{m.code}{peer}") for m in batch]
    try:
        _wait(lambda: all(_first(sink, "Outage", c, cuts[ours]) for ours, theirs in names
                          for c in (ours, theirs)), 300, f"every outage e-mail ({case})")
    except BenchError as exc:
        missing = [c for ours, theirs in names for c in (ours, theirs)
                   if not _first(sink, "Outage", c, cuts[ours])]
        subjects = [m.subject for m in sink.received(CENTRE_MAIL)][-20:]
        raise BenchError(f"{exc}: none for {missing}; the last subjects: {subjects}") from exc
    got = [(_first(sink, "Outage", ours, cuts[ours]) - cuts[ours],
            _first(sink, "Outage", theirs, cuts[ours]) - cuts[ours]) for ours, theirs in names]
    restored_at = time.time()
    for m in batch:
        if case == "dark":
            lab.restore(m)
        else:
            lab.unblock(m, targets[m.code])
    _wait(lambda: all(_first(sink, "Resolved", c, restored_at) for pair in names
                      for c in pair), 300, f"every resolved e-mail ({case})")
    return got


def run(cuts: int = 10, interval_s: float | None = None, heartbeat_s: float | None = None,
        cases: tuple[str, ...] = CASES) -> PartResult:
    """`cuts` per case; `interval_s` and `heartbeat_s`: None for the shipped defaults."""
    result = PartResult("alerts")
    missing = ensure_programs(BLACKBOX, "prometheus", "prometheus-alertmanager")
    if missing:
        raise BenchError(f"missing {', '.join(missing)}")
    interval = interval_s if interval_s is not None else _default(IcmpCheck, "interval_s")
    probe_settings = {name: _default(CollectorSettings, name) for name in SHIPPED}
    if heartbeat_s is not None:
        probe_settings["heartbeat_s"] = heartbeat_s
    rounds = -(-cuts // len(MISSIONS))
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-alerts-"))
    figures: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in cases}
    lab = Lab()
    blackboxes: list[Blackbox] = []
    try:
        missions = [lab.add_mission(code) for code in MISSIONS]
        # A target of its own for each mission: one target lost by every mission at once
        # would be a fleet-wide outage (TargetDownFleetWide), which holds the missions'
        # own alerts back by design (docs/alerts.md).
        targets = {m.code: lab.add_target() for m in missions}
        lab.start_responders(tcp_ports=())
        blackboxes.append(Blackbox(lab, lab.centre, workdir))  # at the centre (dark case)
        for m in missions:  # at each mission (target case), scraped from the centre
            blackboxes.append(Blackbox(lab, m, workdir, listen=f"{m.ipv4}:{BLACKBOX_PORT}"))
        peer_rules = workdir / "peer.rules.yml"
        peer_rules.write_text(PEER_RULES)
        checks = {code: [{"id": "internet-icmp", "kind": "icmp", "target": target.ipv4,
                          **({"interval_s": interval_s} if interval_s is not None else {})}]
                  for code, target in targets.items()}
        alerting = AlertingSettings
        with alert_lab(lab, workdir, missions, checks, interval="15s",
                       group_wait_s=_default(alerting, "group_wait_s"),
                       # Resolutions come sooner (not timed): the next round starts sooner.
                       group_interval_s=10, resend_s=_default(alerting, "resend_s"),
                       scrape_configs=_peer_scrapes(lab, targets), rule_files=[peer_rules],
                       probe_settings=probe_settings,
                       rules=_rules_without_slo(workdir)) as stack:
            prom, sink = stack.prometheus, stack.sink
            prom.wait_for_targets_up(timeout=120)
            _wait(lambda: len(prom.query("unhindered_mission_access_up == 1"))
                  == len(MISSIONS), 180, "every mission up")
            for case in cases:
                done = 0
                for n in range(rounds):
                    batch = missions[:min(len(missions), cuts - done)]
                    got = _one_round(lab, sink, batch, case, targets, interval)
                    figures[case][0].extend(o for o, _p in got)
                    figures[case][1].extend(p for _o, p in got)
                    done += len(batch)
                    print(f"  {case} round {n + 1}/{rounds}: ours, peer (s): "
                          + "; ".join(f"{o:.1f}, {p:.1f}" for o, p in got), flush=True)
                    time.sleep(5)  # let Alertmanager drop the resolved groups
    except BaseException:
        print(f"  kept for a look: {workdir} (the programs' logs)", flush=True)
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        for blackbox in blackboxes:
            blackbox.stop()
        lab.close()

    beat = probe_settings["heartbeat_s"]
    silent_s = _default(StateSettings, "probe_silent_s")
    rows = []
    for case in cases:
        ours, peer = figures[case]
        for name, values in ((f"{case}: ours", ours), (f"{case}: peer", peer)):
            rows.append([name, str(len(values)), f"{quantile(values, 0.5):.1f}",
                         f"{quantile(values, 0.95):.1f}", f"{min(values):.1f}",
                         f"{max(values):.1f}"])
    result.text = (f"outage to e-mail, seconds (check interval {interval:g} s, heartbeat "
                   f"{beat:g} s, probe_silent_s {silent_s:g} s, batch_max_age_s "
                   f"{probe_settings['batch_max_age_s']:g} s; Prometheus 15 s, group_wait "
                   f"{_default(AlertingSettings, 'group_wait_s'):g} s; peer: blackbox, "
                   "for: 30s)\n"
                   + table(["case: path", "cuts", "p50", "p95", "min", "max"], rows))
    for case in cases:
        ours, peer = figures[case]
        p95, peer_p95 = quantile(ours, 0.95), quantile(peer, 0.95)
        result.goals.append(Goal(f"{case}: outage-to-e-mail p95 <= {GOAL_P95_S:g} s",
                                 f"{p95:.1f} s", f"{GOAL_P95_S:g} s",
                                 f"{p95 / GOAL_P95_S:.2f}x", p95 <= GOAL_P95_S))
        result.goals.append(Goal(f"{case}: outage-to-e-mail p95 below the peer's",
                                 f"{p95:.1f} s", f"{peer_p95:.1f} s (blackbox, for: 30s)",
                                 f"{p95 / peer_p95:.2f}x", p95 < peer_p95))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=10, help="per case (10)")
    parser.add_argument("--interval-s", type=float, help="the check's interval (shipped: 30)")
    parser.add_argument("--heartbeat-s", type=float,
                        help="the probe's heartbeat_s (shipped: 10; 600: none within a cut)")
    parser.add_argument("--cases", default=",".join(CASES), help="dark,target")
    args = parser.parse_args()
    cases = tuple(c for c in args.cases.split(",") if c)
    if not set(cases) <= set(CASES):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    started = time.monotonic()
    result = run(args.cuts, args.interval_s, args.heartbeat_s, cases)
    print(f"== alerts ({time.monotonic() - started:.0f} s)\n{result.text}\n== goals")
    print(table(["goal", "ours", "reference", "ratio", "result"],
                [[g.name, g.ours, g.reference, g.ratio, "met" if g.met else "missed"]
                 for g in result.goals]))


if __name__ == "__main__":
    main()
