"""Collector states from real probes in the lab: hysteresis under random loss, a cut, the
silence it causes, and the backfill that rewrites it to what was measured."""

from __future__ import annotations

import json
import time

import pytest

from collector.store.database import Store
from tests.support import wait_for
from tests.support.spine import Collector, Probe

pytestmark = [pytest.mark.netlab, pytest.mark.slow]


def history(collector: Collector, mission: str, check: str) -> list[tuple[float, str]]:
    store = Store(collector.database)
    try:
        return [(r.started_at, r.state) for r in store.intervals(mission, check)]
    finally:
        store.close()


def state_of(collector: Collector, mission: str, check: str) -> str | None:
    for (name, labels), value in collector.metrics().items():
        if name == "unhindered_check_state" and value == 1 and \
                dict(labels).get("mission") == mission and dict(labels).get("check") == check:
            return dict(labels)["state"]
    return None


def test_ten_percent_loss_over_600_rounds_never_goes_down(lab, tmp_path):
    mission = lab.add_mission("ISL")
    target = lab.add_target()
    lab.start_responders()
    lab.set_loss(mission, 10)
    collector = Collector(lab, tmp_path)
    collector.start()
    check = {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4, "interval_s": 0.2,
             "count": 5, "packet_interval_s": 0.01, "timeout_s": 0.15}
    probe = Probe(lab, mission, tmp_path, collector, [check])
    probe.start()
    def regular_rounds() -> list:
        return [r for r in collector.results(probe.probe_id) if not r.confirmation]

    wait_for(lambda: len(regular_rounds()) >= 600, 240, "600 rounds")
    probe.stop()
    rounds = regular_rounds()
    sent = received = 0
    for r in rounds:
        figures = json.loads(r.figures)
        sent, received = sent + figures["sent"], received + figures["received"]
    assert 0.06 < 1 - received / sent < 0.14  # the loss was really there
    states = {state for _t, state in history(collector, "ISL", "internet-icmp")}
    # Never down. Rounds losing one of five requests are over the inventory's default 5 %
    # loss threshold, so the check is degraded at times: that is what loss is for.
    assert "down" not in states and "unknown" not in states
    assert states <= {"up", "degraded"}


def test_cut_is_unknown_while_silent_then_down_at_the_measured_time(lab, tmp_path):
    mission = lab.add_mission("BOL")
    target = lab.add_target()
    lab.start_responders()
    collector = Collector(lab, tmp_path)
    collector.start()
    check = {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4, "interval_s": 1,
             "count": 3, "packet_interval_s": 0.05, "timeout_s": 0.5, "confirm_count": 2,
             "confirm_interval_s": 0.5}
    probe = Probe(lab, mission, tmp_path, collector, [check])
    probe.start()
    wait_for(lambda: state_of(collector, "BOL", "internet-icmp") == "up", 20, "up")

    lab.cut(mission)
    cut_at = time.time()
    # Live, the collector hears nothing: unknown after 3 intervals of silence.
    wait_for(lambda: state_of(collector, "BOL", "internet-icmp") == "unknown", 15, "unknown")
    unknown_seen = time.time() - cut_at
    time.sleep(max(0.0, 12 - unknown_seen))
    lab.restore(mission)
    restored_at = time.time()
    wait_for(lambda: state_of(collector, "BOL", "internet-icmp") == "up", 30, "up again")

    periods = history(collector, "BOL", "internet-icmp")
    # A round that straddles the cut loses part of its echo requests (over the mission's
    # loss threshold), so with the failures after it a short degraded period may come
    # first, within the first rounds of the cut.
    if periods[1][1] == "degraded":
        assert -2 < periods[1][0] - cut_at < 4, periods
        assert periods[2][1] == "down" and periods[2][0] - periods[1][0] < 3, periods
        periods.pop(1)
    states = [state for _t, state in periods]
    # The backfilled results replaced the unknown period with what the probe measured.
    assert states == ["up", "down", "up"], periods
    down_at, up_at = periods[1][0], periods[2][0]
    # Placed from the rounds (docs/states.md): within half an interval of the cut and of
    # the restore, give or take a round started late on a loaded machine.
    assert abs(down_at - cut_at) < 0.5 + 0.5
    assert abs(up_at - restored_at) < 0.5 + 0.5
    assert unknown_seen < 8

    probe.stop()
    # A probe that stops reporting: unknown again after 3 intervals.
    wait_for(lambda: state_of(collector, "BOL", "internet-icmp") == "unknown", 15,
             "unknown after the probe stopped")
