"""A cut in the lab makes the probe send checkDown: a real snmptrapd in the centre receives
the SNMPv3 inform (retried until the link is back, then acknowledged) and decodes it with
the shipped MIBs; a second snmptrapd, sent v2c traps, sees only what got through."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_for
from tests.support.snmp import (
    AUTH_KEY,
    COMMUNITY,
    MIB_ARGS,
    PLAIN,
    PRIV_KEY,
    USER,
    parse_walk,
    program,
    start_snmptrapd,
    v3,
)
from tests.support.spine import Collector, Probe

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

INFORM_PORT, TRAP_PORT, AGENT_PORT = 16162, 16163, 16161


def notifications(log: str) -> list[dict[str, str]]:
    """snmptrapd's log, one dict of variable -> value per notification."""
    found = []
    for line in log.splitlines():
        if "SNMPv2-MIB::snmpTrapOID.0" in line:
            pairs = (item.split(" = ", 1) for item in line.split("\t") if " = " in item)
            found.append({name.strip(): value.strip() for name, value in pairs})
    return found


def of_check(log: str, name: str, check: str) -> list[dict[str, str]]:
    return [n for n in notifications(log)
            if n["SNMPv2-MIB::snmpTrapOID.0"] == f"OID: UNHINDERED-MIB::{name}"
            and f"STRING: {check}" in n.values()]


def test_a_cut_sends_check_down_as_an_acknowledged_inform(lab, tmp_path):
    mission = lab.add_mission("NOR")
    target = lab.add_target()
    lab.start_responders()
    collector = Collector(lab, tmp_path)
    collector.start()

    def in_centre(argv, **kw):
        return lab.popen(lab.centre.name, argv, **kw)

    informs = start_snmptrapd(in_centre, tmp_path / "informs",
                              f"{lab.centre.ipv4}:{INFORM_PORT}")
    traps = start_snmptrapd(in_centre, tmp_path / "traps", f"{lab.centre.ipv4}:{TRAP_PORT}")
    check = {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4, "interval_s": 2,
             "timeout_s": 0.5, "count": 2, "packet_interval_s": 0.05, "confirm_count": 1,
             "confirm_interval_s": 0.5}
    probe = Probe(lab, mission, tmp_path, collector, [check], metrics="127.0.0.1:9641")
    config = yaml.safe_load(probe.config_path.read_text())
    config["snmp"] = {
        "agent": {"listen": f"{mission.ipv4}:{AGENT_PORT}"},
        "users": [{"name": USER, "auth_key": AUTH_KEY, "priv_key": PRIV_KEY}],
        "community": COMMUNITY,
        "notify": [
            # Retried for up to 11 x 2 s: longer than the cut below.
            {"name": "collector", "address": f"{lab.centre.ipv4}:{INFORM_PORT}",
             "user": USER, "timeout_s": 2, "retries": 10},
            {"name": "noc", "address": f"{lab.centre.ipv4}:{TRAP_PORT}", "version": "v2c",
             "type": "trap"},
        ],
    }
    probe.config_path.write_text(yaml.safe_dump(config))
    probe.start()

    # The first confirmed state, up, reaches both managers.
    for receiver in (informs, traps):
        wait_for(lambda r=receiver: of_check(r.received(), "checkUp", "internet-icmp"), 30,
                 "checkUp after the probe's start")
    lab.cut(mission)
    cut_at = time.time()
    time.sleep(7)  # a round fails, its confirmation round too; the inform cannot get out
    assert not of_check(informs.received(), "checkDown", "internet-icmp")
    lab.restore(mission)

    (down,) = wait_for(lambda: of_check(informs.received(), "checkDown", "internet-icmp"), 30,
                       "the checkDown inform, retried until the link is back")
    index = next(k for k, v in down.items() if v == "STRING: internet-icmp").rsplit(".", 1)[1]
    assert down[f"UNHINDERED-MIB::unhCheckState.{index}"] == "INTEGER: down(3)"
    assert down[f"UNHINDERED-MIB::unhCheckKind.{index}"] == "INTEGER: icmp(1)"
    assert down[f"UNHINDERED-MIB::unhCheckTarget.{index}"] == f"STRING: {target.ipv4}"
    assert down[f"UNHINDERED-MIB::unhCheckFailureReason.{index}"] == "STRING: timeout"
    assert down["UNHINDERED-MIB::unhProbeId.0"] == f"STRING: {probe.probe_id}"
    assert down["UNHINDERED-MIB::unhProbeMission.0"] == "STRING: NOR"
    # The measurement time the down state began: inside the cut, to the 0.1 s.
    day, clock, zone = down[f"UNHINDERED-MIB::unhCheckLastChange.{index}"].split()[1].split(",")
    assert zone == "+0:0"
    began = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert cut_at - 1 <= began.timestamp() <= cut_at + 7
    wait_for(lambda: [n for n in notifications(informs.received())
                      if n["SNMPv2-MIB::snmpTrapOID.0"] == "OID: UNHINDERED-MIB::accessLost"],
             10, "accessLost")
    wait_for(lambda: len(of_check(informs.received(), "checkUp", "internet-icmp")) == 2, 30,
             "checkUp after the link came back")
    # The v2c trap of the down state was sent once, into the cut: lost.
    wait_for(lambda: len(of_check(traps.received(), "checkUp", "internet-icmp")) == 2, 30,
             "the recovery trap")
    assert not of_check(traps.received(), "checkDown", "internet-icmp")

    # The agent answers managers in the centre over the lab network, and counts what it sent.
    got = lab.run(lab.centre.name, [program("snmpget"), "-t", "2", *MIB_ARGS, *PLAIN, *v3(),
                                    f"{mission.ipv4}:{AGENT_PORT}",
                                    f"UNHINDERED-MIB::unhCheckState.{index}"])
    assert parse_walk(got.stdout) == {f"unhCheckState.{index}": "1"}, got.stderr
    status, _headers, body = lab.fetch(mission.name, "http://127.0.0.1:9641/metrics")
    assert status == 200
    sent = {(s.labels["target"], s.labels["notification"], s.labels["result"]): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples
            if s.name == "unhindered_probe_snmp_notifications_total"}
    assert sent[("collector", "checkDown", "acknowledged")] == 1
    assert sent[("noc", "checkDown", "sent")] == 1
    probe.stop()
    assert "Traceback" not in (tmp_path / f"{probe.probe_id}-1.log").read_text()
