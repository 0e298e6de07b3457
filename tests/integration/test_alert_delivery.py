"""Alerts out of the collector through a real Alertmanager: the collector's direct alerts
become the e-mails a mission reads (outage, then resolved with its duration), to that
mission and the centre only; maintenance windows become silences, once."""

from __future__ import annotations

import time

import pytest
import yaml

from collector.alerting.amapi import iso
from collector.alerting.amconfig import build_config, render_email_template
from collector.alerting.push import AlertPusher
from collector.cli import main
from collector.config import AlertingSettings
from collector.inventory.sites import load_inventory
from tests.integration.test_alertmanager_config import FRA_ONLY
from tests.support import require_program, wait_for
from tests.support.alerting import inventory_yaml
from tests.support.promstack import ALERTMANAGER, alertmanager
from tests.support.smtp_sink import smtp_sink

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _programs():
    require_program(ALERTMANAGER, "prometheus-alertmanager")


def _am_config(tmp_path, smarthost: str, inventory: str = FRA_ONLY) -> str:
    (tmp_path / "inventory.yaml").write_text(inventory)
    settings = AlertingSettings(centre_contacts=("noc@centre.example.org",),
                                smtp_smarthost=smarthost, smtp_require_tls=False,
                                smtp_from="unhindered@centre.example.org",
                                group_wait_s=1, group_interval_s=1)
    (tmp_path / "unhindered-email.tmpl").write_text(render_email_template(settings))
    config = build_config(load_inventory(tmp_path / "inventory.yaml"), settings, tmp_path)
    return yaml.safe_dump(config)


def test_direct_alerts_mail_the_mission_and_the_centre_then_the_resolution(tmp_path):
    with smtp_sink() as sink, alertmanager(_am_config(tmp_path, sink.smarthost)) as am:
        pusher = AlertPusher(am.url, resend_s=2)
        try:
            since = time.time() - 30
            pusher.observe("FRA", "internet", "down", since)
            pusher.observe("FRA", "documents", "up", since)  # not an alert
            outage = wait_for(lambda: sink.received("noc@fra.example.org"), 60,
                              "the outage e-mail to FRA")[0]
            wait_for(lambda: sink.received("noc@centre.example.org"), 60,
                     "the outage e-mail to the centre")
            assert outage.subject == "Outage: FRA: no access to internet"
            assert "it@fra.example.org" in outage.to
            assert "What is down: FRA: no access to internet" in outage.body
            assert f"Since: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(since))} UTC" \
                in outage.body
            assert "What to check: the mission's router" in outage.body
            # The same labels as the rule alert, so Alertmanager dedupes the two.
            (held,) = am.alerts('alertname="MissionAccessDown"')
            assert held["labels"] == {"alertname": "MissionAccessDown", "mission": "FRA",
                                      "group": "internet", "severity": "critical",
                                      "scope": "mission"}

            pusher.observe("FRA", "internet", "up", time.time())
            resolved = wait_for(
                lambda: [m for m in sink.received("noc@fra.example.org")
                         if m.subject.startswith("Resolved")], 60, "the resolved e-mail")[0]
            assert "Back to normal: FRA: no access to internet" in resolved.body
            assert "The outage lasted " in resolved.body
            lasted = resolved.body.split("The outage lasted ")[1].split(",")[0]
            assert lasted.endswith("s") and lasted.startswith(("30s", "31s", "32s", "33s"))
        finally:
            pusher.close()
        assert not sink.received("noc@gbr.example.org"), "GBR was told about FRA"


MAINTENANCE = FRA_ONLY.replace(
    "    contacts: [noc@gbr.example.org]\n",
    "    contacts: [noc@gbr.example.org]\n"
    "    maintenance:\n"
    "      - {every: week, days: [mon, tue, wed, thu, fri, sat, sun], at: '03:00',"
    " duration: 1h}\n").replace(
    "    contacts: [noc@fra.example.org, it@fra.example.org]\n",
    "    contacts: [noc@fra.example.org, it@fra.example.org]\n"
    "    maintenance:\n"
    "      - {start: 2020-01-01T00:00, end: 2099-01-01T00:00, note: refit}\n")


def test_maintenance_windows_become_silences_once(tmp_path, capsys):
    with alertmanager("route: {receiver: x}\nreceivers: [{name: x}]\n") as am:
        (tmp_path / "inventory.yaml").write_text(MAINTENANCE)
        config = tmp_path / "collector.yaml"
        config.write_text(yaml.safe_dump({"inventory": "inventory.yaml",
                                          "alerting": {"alertmanager_url": am.url}}))
        am.request("/api/v2/silences", method="POST", body={
            "matchers": [{"name": "mission", "value": "GBR", "isRegex": False}],
            "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "a person", "comment": "by hand"})

        def ours():
            return sorted((s["matchers"][0]["value"], s["endsAt"][:16])
                          for s in am.silences()
                          if s["createdBy"] == "unhindered-collector"
                          and s["status"]["state"] != "expired")

        assert main(["-c", str(config), "alertmanager-silences", "--days", "3"]) == 0
        first = ours()
        # FRA's long window, and GBR's daily hour on each of the next 3 days (or 4, when
        # one is in progress now).
        assert [m for m, _ in first].count("FRA") == 1
        assert 3 <= [m for m, _ in first].count("GBR") <= 4
        assert ("FRA", "2098-12-31T23:00") in first  # Paris midnight, in UTC
        assert main(["-c", str(config), "alertmanager-silences", "--days", "3"]) == 0
        assert ours() == first, "a re-run must not duplicate silences"
        assert "0 silences created" in capsys.readouterr().out

        # FRA's window leaves the inventory: its silence is expired, the others stay.
        (tmp_path / "inventory.yaml").write_text(MAINTENANCE.replace(
            "    maintenance:\n      - {start: 2020-01-01T00:00, end: 2099-01-01T00:00, "
            "note: refit}\n", ""))
        assert main(["-c", str(config), "alertmanager-silences", "--days", "3"]) == 0
        assert ours() == [s for s in first if s[0] != "FRA"]
        by_hand = [s for s in am.silences() if s["createdBy"] == "a person"]
        assert by_hand[0]["status"]["state"] == "active"


def test_no_alertmanager_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "collector.yaml"
    config.write_text("alerting: {}\n")
    assert main(["-c", str(config), "alertmanager-silences"]) == 2
    assert "--alertmanager-url" in capsys.readouterr().err
    assert main(["-c", str(config), "alertmanager-silences",
                 "--alertmanager-url", "http://127.0.0.1:9"]) == 1
    assert "failed" in capsys.readouterr().err


def test_fleet_and_collector_alerts_inhibit_the_mission_alerts_they_explain(tmp_path):
    def alert(**labels):
        # Started now, as a rule alert that just fired: Alertmanager flushes an alert
        # older than group_wait at once, before an inhibition posted with it can apply.
        return {"labels": labels, "startsAt": iso(time.time()),
                "endsAt": iso(time.time() + 600)}

    def states():
        return {(a["labels"]["alertname"], a["labels"]["mission"],
                 a["labels"].get("group", "")): a["status"]["state"] for a in am.alerts()}

    fra_docs = ("MissionAccessDown", "FRA", "documents")
    gbr_internet = ("MissionAccessDown", "GBR", "internet")
    with smtp_sink() as sink, alertmanager(_am_config(tmp_path, sink.smarthost)) as am:
        am.post_alerts([
            alert(alertname="TargetDownFleetWide", mission="*", target="https://docs/",
                  group="documents", severity="critical", scope="fleet"),
            alert(alertname="MissionAccessDown", mission="FRA", group="documents",
                  severity="critical", scope="mission"),
            alert(alertname="MissionAccessDown", mission="GBR", group="internet",
                  severity="critical", scope="mission"),
        ])
        # The documents target explains FRA's documents outage, not GBR's internet one.
        wait_for(lambda: states().get(fra_docs) == "suppressed", 30, "FRA inhibited")
        assert states()[gbr_internet] == "active"
        wait_for(lambda: sink.received("noc@gbr.example.org"), 30, "GBR's e-mail")
        assert not sink.received("noc@fra.example.org")

        # Without the collector, every mission alert is held back; its own alert is not.
        down = alert(alertname="CollectorDown", mission="*", severity="critical",
                     scope="collector")
        down["annotations"] = {"summary": "The Unhindered collector is down or not scraped"}
        am.post_alerts([down])
        wait_for(lambda: states().get(gbr_internet) == "suppressed", 30, "GBR inhibited")
        assert states()[("CollectorDown", "*", "")] == "active"
        wait_for(lambda: [m for m in sink.received("noc@centre.example.org")
                          if "The Unhindered collector is down" in m.subject], 30,
                 "the centre paged about the collector")


FOUR_MISSIONS = inventory_yaml(("FRA", "GBR", "DEU", "ITA"))


def test_a_fleet_wide_outage_mails_the_centre_not_each_mission(tmp_path):
    # One documents target checked by four missions. The collector's direct alerts start
    # when the outage started, so Alertmanager would mail them at once, before any
    # inhibition: the pusher itself holds back the missions the fleet-wide outage explains.
    missions = ("FRA", "GBR", "DEU", "ITA")
    states = dict.fromkeys(missions, "up")

    def check_states():
        return [(m, "documents", "https://docs.example.org/", s) for m, s in states.items()]

    def mails(mission):
        return [m.subject for m in sink.received(f"noc@{mission.lower()}.example.org")]

    def change(mission, state):
        states[mission] = state
        pusher.observe(mission, "documents", state, since)

    with smtp_sink() as sink, alertmanager(
            _am_config(tmp_path, sink.smarthost, FOUR_MISSIONS)) as am:
        pusher = AlertPusher(am.url, resend_s=2, check_states=check_states, fleet_keep_s=4)
        try:
            since = time.time() - 30
            change("FRA", "down")
            change("GBR", "down")  # 2 of 4: not yet fleet-wide, both are told
            wait_for(lambda: mails("FRA") and mails("GBR"), 30, "FRA's and GBR's e-mails")
            change("DEU", "down")  # 3 of 4: the target is down fleet-wide
            change("ITA", "down")
            fleet = wait_for(lambda: [s for s in mails("centre")
                                      if "is down from 3 missions" in s
                                      or "is down from 4 missions" in s], 30,
                             "the centre's fleet-wide e-mail")
            assert "https://docs.example.org/ (documents)" in fleet[0]
            (held,) = am.alerts('alertname="TargetDownFleetWide"')
            assert held["labels"] == {"alertname": "TargetDownFleetWide", "mission": "*",
                                      "target": "https://docs.example.org/",
                                      "group": "documents", "severity": "critical",
                                      "scope": "fleet"}
            time.sleep(3)  # group_wait 1 s, group_interval 1 s: anything sent is here
            assert not mails("DEU") and not mails("ITA"), "a mission mailed for the target"
            assert {a["labels"]["mission"] for a in am.alerts('alertname="MissionAccessDown"')
                    } == {"FRA", "GBR"}

            # The target returns for FRA and DEU: 2 of 4 down, no longer fleet-wide. Missions
            # come back one by one, so ITA is still held for the fleet's keep time (4 s
            # here); still down after it, the outage is ITA's own, and ITA is told.
            change("FRA", "up")
            change("DEU", "up")
            back = time.time()
            time.sleep(2)
            pusher.reconcile()
            time.sleep(2)
            assert not mails("ITA"), "ITA told while the fleet-wide outage was kept"
            time.sleep(max(0.0, back + 4.5 - time.time()))
            pusher.reconcile()  # the collector does this every few seconds
            wait_for(lambda: [s for s in mails("ITA") if s.startswith("Outage")], 30,
                     "ITA's e-mail once the fleet-wide outage is over")
            wait_for(lambda: not am.alerts('alertname="TargetDownFleetWide"'), 30,
                     "the fleet-wide alert resolved")
            assert not mails("DEU"), "DEU was told about an outage that was the target's"
        finally:
            pusher.close()
