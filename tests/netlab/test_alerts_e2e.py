"""End to end in the lab, with real probes, collector, Prometheus and Alertmanager and an
SMTP sink:
- a mission's link is cut: the mission and the centre get the outage e-mail, no other
  mission gets any; the link returns and the resolved e-mail says how long it lasted;
- a target is down for one mission only (its probe still reports): MissionAccessDown,
  mailed to that mission, then resolved;
- a target is down for the whole fleet: one fleet-wide e-mail to the centre, and only the
  missions that went down before the outage was known fleet-wide are told."""

from __future__ import annotations

import time

import pytest

from collector.alerting.push import FLEET_MIN_CHECKS
from tests.support import require_program, wait_for
from tests.support.alerting import CENTRE_MAIL, alert_lab, contact
from tests.support.promstack import ALERTMANAGER, PROMETHEUS

pytestmark = [pytest.mark.netlab, pytest.mark.slow, pytest.mark.timeout(300)]


def _value(prom, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def _icmp_check(target) -> dict:
    return {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4, "interval_s": 1,
            "count": 3, "packet_interval_s": 0.05, "timeout_s": 0.5, "confirm_count": 2,
            "confirm_interval_s": 0.5}


def _programs() -> None:
    require_program(PROMETHEUS, "prometheus")
    require_program(ALERTMANAGER, "prometheus-alertmanager")


def test_cut_mission_gets_outage_and_resolved_mail_others_none(lab, tmp_path):
    _programs()
    cut, spared = lab.add_mission("FRA"), lab.add_mission("GBR")
    target = lab.add_target()
    lab.start_responders()
    check = _icmp_check(target)
    with alert_lab(lab, tmp_path, [cut, spared], [check]) as stack:
        prom, sink = stack.prometheus, stack.sink
        prom.wait_for_targets_up()
        wait_for(lambda: _value(prom, "count(unhindered_mission_access_up == 1)") == 2, 60,
                 "both missions up, seen through Prometheus")

        lab.cut(cut)
        cut_at = time.time()
        outage = wait_for(lambda: sink.received(contact("FRA")), 60, "FRA's outage e-mail")[0]
        print(f"cut to e-mail: {outage.received_at - cut_at:.1f} s")
        assert outage.subject == "Outage: FRA: nothing heard from the mission's probe"
        assert "What is down: FRA: nothing heard from the mission's probe" in outage.body
        assert "What to check: whether the mission's Internet line works" in outage.body
        assert outage.received_at - cut_at < 45  # generous: the goal itself is in bench/
        wait_for(lambda: [m for m in sink.received(CENTRE_MAIL) if "FRA" in m.subject], 30,
                 "the centre's copy")
        # The rule path agrees: Prometheus fires the same alert from the scraped state.
        wait_for(lambda: [a for a in prom.alerts() if a["state"] == "firing"
                          and a["labels"]["alertname"] == "MissionProbeSilent"
                          and a["labels"]["mission"] == "FRA"], 60,
                 "Prometheus's MissionProbeSilent for FRA")
        # The counters the SLO alerts use saw the silence.
        assert _value(prom, 'unhindered_mission_access_seconds_total'
                            '{mission="FRA",state="unknown"}') > 0

        lab.restore(cut)
        restored_at = time.time()

        def resolved():
            # Nothing left firing for FRA: every alert of the group is resolved.
            return [m for m in sink.received(contact("FRA"))
                    if m.subject.startswith("Resolved") and m.received_at > restored_at]

        final = wait_for(resolved, 90, "FRA's resolved e-mail")[-1]
        assert "Back to normal: FRA" in final.body and "reports an outage" not in final.body
        lasted = final.body.split("The outage lasted ")[1].split(",")[0]
        assert lasted.endswith("s"), final.body
        assert not sink.received(contact("GBR")), [str(m) for m in sink.received()]
        assert all("GBR" not in m.subject for m in sink.received(CENTRE_MAIL))


def test_a_target_down_for_one_mission_is_that_missions_outage(lab, tmp_path):
    # The probe still reports, and its measurements fail: MissionAccessDown, not silence.
    _programs()
    hit, spared = lab.add_mission("FRA"), lab.add_mission("GBR")
    target = lab.add_target()
    lab.start_responders()
    with alert_lab(lab, tmp_path, [hit, spared], [_icmp_check(target)]) as stack:
        prom, sink = stack.prometheus, stack.sink
        prom.wait_for_targets_up()
        wait_for(lambda: _value(prom, "count(unhindered_mission_access_up == 1)") == 2, 60,
                 "both missions up, seen through Prometheus")
        lab.block(hit, target)
        outage = wait_for(lambda: sink.received(contact("FRA")), 60, "FRA's outage e-mail")[0]
        assert outage.subject == "Outage: FRA: no access to internet"
        assert "What to check: the mission's router" in outage.body
        wait_for(lambda: [a for a in prom.alerts() if a["state"] == "firing"
                          and a["labels"]["alertname"] == "MissionAccessDown"
                          and a["labels"]["mission"] == "FRA"], 60,
                 "Prometheus's MissionAccessDown for FRA")
        assert not [a for a in prom.alerts()
                    if a["labels"]["alertname"] == "MissionProbeSilent"]

        lab.unblock(hit, target)
        resolved = wait_for(lambda: [m for m in sink.received(contact("FRA"))
                                     if m.subject.startswith("Resolved")], 90,
                            "FRA's resolved e-mail")[-1]
        assert "Back to normal: FRA: no access to internet" in resolved.body
        assert not sink.received(contact("GBR")), [str(m) for m in sink.received()]


def test_a_target_down_for_the_fleet_pages_the_centre_not_every_mission(lab, tmp_path):
    _programs()
    missions = [lab.add_mission(code) for code in ("FRA", "GBR", "DEU", "ITA", "ESP")]
    target = lab.add_target()
    lab.start_responders()
    with alert_lab(lab, tmp_path, missions, [_icmp_check(target)]) as stack:
        prom, sink = stack.prometheus, stack.sink
        prom.wait_for_targets_up()
        wait_for(lambda: _value(prom, "count(unhindered_mission_access_up == 1)") == 5, 60,
                 "every mission up, seen through Prometheus")
        for mission in missions:
            lab.block(mission, target)
        fleet = wait_for(lambda: [m for m in sink.received(CENTRE_MAIL)
                                  if "TargetDownFleetWide" in m.body
                                  or f"{target.ipv4} (internet) is down" in m.subject], 60,
                         "the centre's fleet-wide e-mail")
        assert f"{target.ipv4} (internet) is down from" in fleet[0].subject
        # Prometheus's own TargetDownFleetWide fires too, and Alertmanager holds one.
        wait_for(lambda: [a for a in prom.alerts() if a["state"] == "firing"
                          and a["labels"]["alertname"] == "TargetDownFleetWide"], 60,
                 "Prometheus's TargetDownFleetWide")

        def told():
            return {m.code for m in missions if sink.received(contact(m.code))}

        # Only the missions that went down before the third one did were told; the rule
        # path's MissionAccessDown for the rest is inhibited in Alertmanager.
        time.sleep(5)
        assert len(told()) <= FLEET_MIN_CHECKS - 1, [str(m) for m in sink.received()]
        before = told()
        print(f"missions told before the fleet-wide outage was known: {sorted(before)}")
        for mission in missions:
            lab.unblock(mission, target)
        wait_for(lambda: _value(prom, "count(unhindered_mission_access_up == 1)") == 5, 60,
                 "every mission up again")
        time.sleep(5)
        assert {m for m in told() if m not in before} == set(), [str(m) for m in sink.received()]
