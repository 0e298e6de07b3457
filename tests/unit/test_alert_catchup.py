"""Direct alerts while a probe catches up (issue 12, case 11): the state changes a backlog's
rounds cause are history. AlertPusher holds a catching-up mission's new alerts until the
probe reports its backlog drained (then posts only what is still wanted) or a bound
passes; alerts already posted behave as before. A fake clock; nothing is sent anywhere
(the pusher's `_post` is replaced, and the assertions read what it holds as posted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.alerting.push import CATCHUP_IDLE_S, CATCHUP_MAX_S, AlertPusher

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pusher(clock):
    p = AlertPusher("http://127.0.0.1:9", resend_s=3_600, clock=clock)
    p._post = lambda alerts: None  # nothing leaves the test
    yield p
    p.close()


def firing(pusher: AlertPusher) -> set[tuple[str, str, str]]:
    """What the pusher has posted as firing: (alertname, mission, group)."""
    return {(dict(k)["alertname"], dict(k)["mission"], dict(k).get("group", "*"))
            for k in pusher._posted}


def batch(pusher: AlertPusher, backlog: int | None, *changes, mission: str = "FRA",
          probe: str = "fra-1") -> None:
    """One batch as Collector.store_results hands it over: the backlog before its rounds
    are applied, the access changes they cause, then the end of the batch."""
    pusher.note_backlog(mission, probe, backlog)
    for group, state, since in changes:
        pusher.observe(mission, group, state, since)
    pusher.note_applied(mission, probe)


DOWN = ("MissionAccessDown", "FRA", "internet")
SILENT = ("MissionProbeSilent", "FRA", "*")


def test_an_outage_over_before_the_backlog_is_drained_is_never_posted(pusher, clock):
    batch(pusher, 1_200, ("internet", "down", NOW - 600), ("*", "down", NOW - 600))
    assert firing(pusher) == set()
    clock.now += 8
    pusher.reconcile()  # the collector's periodic re-check, between batches
    assert firing(pusher) == set()
    batch(pusher, 0, ("internet", "up", NOW - 60), ("*", "up", NOW - 60))
    clock.now += 2
    pusher.reconcile()
    assert firing(pusher) == set()
    assert not pusher._holds


def test_an_outage_still_on_when_the_backlog_is_drained_is_posted_then(pusher, clock):
    batch(pusher, 500, ("documents", "down", NOW - 600))
    clock.now += 3
    batch(pusher, 0)  # the newest rounds: documents still down
    pusher.reconcile()
    assert firing(pusher) == {("MissionAccessDown", "FRA", "documents")}
    (alert,) = pusher._posted.values()
    assert alert["startsAt"].startswith("2027-01-15T07:50:00")  # when it began: NOW - 600


def test_the_hold_ends_only_after_the_drained_batch_is_applied(pusher, clock):
    # A periodic reconcile may run on the database thread between the moment the last
    # batch is noted (backlog 0) and the moment its rounds are applied: it must not post
    # the state of the rounds before, which this batch is about to end.
    batch(pusher, 300, ("internet", "down", NOW - 600))
    pusher.note_backlog("FRA", "fra-1", 0)
    pusher.reconcile()
    assert firing(pusher) == set()
    pusher.observe("FRA", "internet", "up", NOW - 30)
    pusher.note_applied("FRA", "fra-1")
    pusher.reconcile()
    assert firing(pusher) == set()


def test_a_probe_that_stops_mid_drain_pages_after_the_idle_bound(pusher, clock):
    # Its link failed again: it cannot report, and the collector's silence check turns the
    # mission unknown. That is a real outage, told once the probe has been quiet too long.
    batch(pusher, 5_000, ("internet", "down", NOW - 900))
    pusher.observe("FRA", "*", "unknown", NOW - 870)  # a silence tick
    clock.now += CATCHUP_IDLE_S - 1
    pusher.reconcile()
    assert firing(pusher) == set()
    clock.now += 2
    pusher.reconcile()
    assert firing(pusher) == {DOWN, SILENT}


def test_a_drain_that_never_ends_is_bounded(pusher, clock):
    batch(pusher, 100_000, ("internet", "down", NOW - 86_400))
    while clock.now < NOW + CATCHUP_MAX_S - 10:
        clock.now += 10
        batch(pusher, 100_000)  # batches keep coming, the backlog never drains
        assert firing(pusher) == set()
    clock.now += 20
    pusher.reconcile()
    assert firing(pusher) == {DOWN}


def test_other_missions_and_posted_alerts_are_not_held(pusher, clock):
    pusher.observe("FRA", "*", "unknown", NOW - 100)  # live silence: posted at once
    assert firing(pusher) == {SILENT}
    batch(pusher, 800, ("internet", "down", NOW - 200), ("*", "down", NOW - 200))
    # The probe is heard again: its silence alert resolves as before; the outage in its
    # backlog is held.
    assert firing(pusher) == set()
    pusher.observe("GBR", "internet", "down", NOW - 20)  # another mission, live
    assert firing(pusher) == {("MissionAccessDown", "GBR", "internet")}


def test_a_batch_without_a_backlog_figure_changes_nothing(pusher, clock):
    # SNMP polls carry no backlog: they neither start a hold nor end one.
    batch(pusher, None, ("internet", "down", NOW - 30))
    assert firing(pusher) == {DOWN}
    batch(pusher, 40, ("documents", "down", NOW - 300))
    batch(pusher, None)
    pusher.reconcile()
    assert firing(pusher) == {DOWN}
    batch(pusher, 0)
    pusher.reconcile()
    assert firing(pusher) == {DOWN, ("MissionAccessDown", "FRA", "documents")}


def test_a_mission_is_held_while_any_of_its_probes_catches_up(pusher, clock):
    batch(pusher, 50, ("internet", "down", NOW - 300), probe="fra-1")
    batch(pusher, 0, probe="fra-2")  # the other probe is live
    pusher.reconcile()
    assert firing(pusher) == set()
    batch(pusher, 0, probe="fra-1")
    pusher.reconcile()
    assert firing(pusher) == {DOWN}


def test_a_catching_up_mission_does_not_count_towards_a_fleet_wide_outage(clock):
    states = {"FRA": "down", "GBR": "down", "DEU": "down", "ITA": "up"}
    pusher = AlertPusher("http://127.0.0.1:9", resend_s=3_600, clock=clock,
                         check_states=lambda: [(m, "documents", "https://docs/", s)
                                               for m, s in states.items()])
    pusher._post = lambda alerts: None
    try:
        # DEU's down is from its backlog: only 2 of 3 live missions see the target down.
        pusher.note_backlog("DEU", "deu-1", 900)
        pusher.observe("FRA", "documents", "down", NOW - 30)
        pusher.observe("GBR", "documents", "down", NOW - 30)
        pusher.observe("DEU", "documents", "down", NOW - 500)
        assert {a for a, _m, _g in firing(pusher)} == {"MissionAccessDown"}
        assert {m for _a, m, _g in firing(pusher)} == {"FRA", "GBR"}
    finally:
        pusher.close()


def test_the_rules_hold_a_catch_up_within_the_same_bounds():
    rules = yaml.safe_load(Path("alerts/unhindered.rules.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("record") == "mission:unhindered_probes_catching_up:count"]
    assert f"unhindered_probe_last_report_timestamp_seconds < {CATCHUP_IDLE_S:g})" in rule["expr"]
    assert f"[{CATCHUP_MAX_S / 60:g}m]" in rule["expr"]
    gated = {r["alert"] for g in rules["groups"] for r in g["rules"]
             if "mission:unhindered_probes_catching_up:count" in r.get("expr", "")}
    assert gated == {"MissionAccessDown", "MissionAccessDegraded", "MissionProbeSilent",
                     "TargetDownFleetWide"}
