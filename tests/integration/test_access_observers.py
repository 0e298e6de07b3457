"""The hook in collector/state/timeline.py: access transitions reach the observers (the access
counters and the direct alerts), and through AlertPusher a real Alertmanager holds the
outage while it lasts and resolves it when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.alerting.push import (
    FLEET_KEEP_S,
    FLEET_MIN_CHECKS,
    FLEET_MIN_SHARE,
    AlertPusher,
    fleet_wide,
)
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from tests.integration.test_store import T0, batch_of, ingest
from tests.support import require_program, wait_for
from tests.support.promstack import ALERTMANAGER, alertmanager

pytestmark = pytest.mark.timeout(120)


def test_transitions_reach_observers_once_each(any_store):
    seen = []
    timelines = Timelines(any_store, lambda mission: Policy())
    timelines.observers.append(lambda *change: seen.append(change))
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 51, 10)]))
    ingest(any_store, timelines, batch_of([(60, True)], first_seq=7))  # no change: no call
    assert seen == [("FRA", "internet", "up", T0), ("FRA", "*", "up", T0)]
    timelines.tick(T0 + 200)  # silent: unknown 3 intervals after the last round (60)
    assert seen[2:] == [("FRA", "internet", "unknown", T0 + 90),
                        ("FRA", "*", "unknown", T0 + 90)]


def test_a_failing_observer_does_not_stop_the_history(any_store):
    timelines = Timelines(any_store, lambda mission: Policy())

    def broken(*_change):
        raise RuntimeError("observer bug")

    timelines.observers.append(broken)
    ingest(any_store, timelines, batch_of([(0, True), (10, True)]))
    assert timelines.access[("FRA", "*")] == ("up", T0)


def test_silence_and_backfill_post_and_resolve_alerts_in_alertmanager(any_store):
    require_program(ALERTMANAGER, "prometheus-alertmanager")
    with alertmanager("route: {receiver: x}\nreceivers: [{name: x}]\n") as am:
        # Firing alerts are posted to last 3 x 30 s: gone sooner, they were resolved.
        pusher = AlertPusher(am.url, resend_s=30)
        try:
            timelines = Timelines(any_store, lambda mission: Policy())
            timelines.observers.append(pusher.observe)
            ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 61, 10)]))
            timelines.tick(T0 + 200)
            silent = wait_for(lambda: am.alerts('alertname="MissionProbeSilent"'), 30,
                              "MissionProbeSilent in Alertmanager")
            assert silent[0]["labels"]["mission"] == "FRA"
            assert silent[0]["startsAt"].startswith("2026-01-01T00:01:30")  # T0 + 90

            # The backlog: failures, then good rounds; the mission is up again.
            backlog = [(t, False) for t in range(70, 151, 10)] + [(160, True), (170, True)]
            ingest(any_store, timelines, batch_of(backlog, first_seq=8))
            assert timelines.access[("FRA", "*")][0] == "up"
            wait_for(lambda: not am.alerts(), 30, "every alert resolved")
        finally:
            pusher.close()


def test_check_states_carry_each_checks_target_and_state(any_store):
    timelines = Timelines(any_store, lambda mission: Policy())
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 31, 10)]))
    ingest(any_store, timelines, batch_of([(t, False) for t in range(0, 31, 10)],
                                          check="docs-tcp", group="documents",
                                          outbox="b" * 32))
    (target,) = {m.target for m in any_store.latest_per_check()
                 if m.check_id == "docs-tcp"}
    assert sorted(timelines.check_states())[0] == ("FRA", "documents", target, "down")
    assert [s[3] for s in timelines.check_states() if s[1] == "internet"] == ["up"]


def test_fleet_wide_takes_the_rules_thresholds():
    rules = yaml.safe_load(Path("alerts/unhindered.rules.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "TargetDownFleetWide"]
    assert f">= {FLEET_MIN_CHECKS}\n" in rule["expr"]
    assert f">= {FLEET_MIN_SHARE}\n" in rule["expr"]
    assert rule["keep_firing_for"] == f"{FLEET_KEEP_S / 60:g}m"

    def checks(down, up):
        return [(f"M{i}", "documents", "t", "down" if i < down else "up")
                for i in range(down + up)]

    assert fleet_wide(checks(FLEET_MIN_CHECKS, 0)) == {("t", "documents"): FLEET_MIN_CHECKS}
    assert fleet_wide(checks(FLEET_MIN_CHECKS - 1, 0)) == {}
    assert fleet_wide(checks(4, 4)) == {("t", "documents"): 4}  # half of those checking
    assert fleet_wide(checks(4, 5)) == {}
