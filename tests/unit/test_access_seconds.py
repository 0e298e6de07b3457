"""unhindered_mission_access_seconds_total: seconds credited to the state held, maintenance
apart, never decreasing (collector/metrics/access.py)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from collector.inventory.maintenance import OneOffWindow, Schedule
from collector.metrics.access import AccessSeconds, render_mission_access
from collector.state.hysteresis import Policy


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def totals(counters: AccessSeconds, access) -> dict[tuple[str, str], float]:
    text = counters.render(access)
    (family,) = text_string_to_metric_families(text)
    assert family.type == "counter"
    return {(s.labels["mission"], s.labels["state"]): s.value for s in family.samples}


def test_seconds_go_to_the_state_held_and_never_decrease():
    clock = Clock(1_000.0)
    counters = AccessSeconds(clock=clock)
    counters.observe("FRA", "*", "up", 990.0)
    counters.observe("FRA", "internet", "down", 990.0)  # a group: not the overall access
    clock.t = 1_060.0
    access = {("FRA", "*"): ("up", 990.0)}
    first = totals(counters, access)
    assert first[("FRA", "up")] == 60.0
    assert first[("FRA", "down")] == 0.0 and first[("FRA", "maintenance")] == 0.0
    counters.observe("FRA", "*", "down", 1_055.0)  # learnt at 1060: counts from then
    clock.t = 1_090.0
    second = totals(counters, {("FRA", "*"): ("down", 1_055.0)})
    assert second[("FRA", "up")] == 60.0 and second[("FRA", "down")] == 30.0
    assert all(second[k] >= first[k] for k in first)


def test_maintenance_time_is_apart_and_unseen_missions_start_at_zero():
    window = OneOffWindow.model_validate({"start": "1970-01-01T00:20:00Z",
                                          "end": "1970-01-01T00:30:00Z"})
    clock = Clock(1_000.0)  # 00:16:40
    counters = AccessSeconds(lambda code: Schedule((window,), "UTC"), clock=clock)
    counters.observe("FRA", "*", "down", 900.0)
    clock.t = 2_000.0  # 00:33:20: 600 s of it in the window
    got = totals(counters, {("FRA", "*"): ("down", 900.0), ("GBR", "*"): ("up", 0.0)})
    assert got[("FRA", "maintenance")] == 600.0
    assert got[("FRA", "down")] == 400.0
    # GBR was loaded before the counters existed: it starts counting at the render.
    assert got[("GBR", "up")] == 0.0
    clock.t = 2_010.0
    assert totals(counters, {("GBR", "*"): ("up", 0.0)})[("GBR", "up")] == 10.0


def test_thresholds_of_the_missions_in_view_are_exported():
    class FakeTimelines:  # what render_mission_access reads of Timelines
        access = {("FRA", "*"): ("up", 0.0), ("FRA", "internet"): ("up", 0.0),
                  ("GBR", "*"): ("down", 0.0)}
        @staticmethod
        def policy_for(mission: str) -> Policy:
            return Policy(loss_pct=5, rtt_ms=250) if mission == "FRA" else Policy()

    families = {f.name: f for f in text_string_to_metric_families(
        render_mission_access(FakeTimelines(), AccessSeconds()))}
    loss = families["unhindered_mission_loss_threshold_ratio"].samples
    rtt = families["unhindered_mission_rtt_threshold_seconds"].samples
    # GBR has no threshold set anywhere: no sample rather than a made-up one.
    assert [(s.labels, s.value) for s in loss] == [({"mission": "FRA"}, 0.05)]
    assert [(s.labels, s.value) for s in rtt] == [({"mission": "FRA"}, 0.25)]
    assert "unhindered_mission_access_seconds" in families
