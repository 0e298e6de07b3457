"""The collector polls a net-snmp snmpd standing in for a mission's router, in the lab:
interface state and traffic counters show on /metrics (v3 authPriv and v2c), a router
with wrong credentials counts failed polls, and promtool accepts the exposition."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import require_program, wait_for
from tests.support.netsnmp import (
    ROUTER_AUTH_KEY,
    ROUTER_COMMUNITY,
    ROUTER_PRIV_KEY,
    ROUTER_USER,
    snmpd_argv,
    snmpd_env,
)
from tests.support.spine import Collector

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

SPARE = "uhspare"  # a veth pair inside the mission, to take down without cutting the lab


def interfaces(collector: Collector, router: str) -> dict[str, dict[str, float]]:
    """ifname -> {series suffix: value} of one router."""
    found: dict[str, dict[str, float]] = {}
    for (name, labels), value in collector.metrics().items():
        labels = dict(labels)
        if name.startswith("unhindered_router_if_") and labels.get("router") == router:
            assert labels["mission"] == "FRA"
            series = name.removeprefix("unhindered_router_if_")
            found.setdefault(labels["ifname"], {})[series] = value
    return found


def kernel_counter(lab, mission, iface: str, counter: str) -> int:
    done = lab.run(mission.name, ["cat", f"/sys/class/net/{iface}/statistics/{counter}"])
    return int(done.stdout)


def test_router_interfaces_polled_and_exported(lab, tmp_path):
    promtool = require_program("promtool", "prometheus")
    mission = lab.add_mission("FRA")
    lab.run(mission.name, ["ip", "link", "add", SPARE, "type", "veth", "peer", "name",
                           f"{SPARE}p"], check=True)
    for end in (SPARE, f"{SPARE}p"):
        lab.run(mission.name, ["ip", "link", "set", end, "up"], check=True)
    snmpd_dir = tmp_path / "snmpd"
    snmpd_dir.mkdir()
    lab.popen(mission.name, snmpd_argv(snmpd_dir, [f"udp:{mission.ipv4}:161"], "198.18.0.0/16"),
              env=snmpd_env(snmpd_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    router = {"mission": "FRA", "address": mission.ipv4, "interval_s": 1, "timeout_s": 1,
              "retries": 0}
    collector = Collector(lab, tmp_path, config={"snmp": {"routers": [
        {**router, "name": "fra-gw", "user": {"name": ROUTER_USER, "auth_key": ROUTER_AUTH_KEY,
                                              "priv_key": ROUTER_PRIV_KEY}},
        {**router, "name": "fra-gw-v2c", "community": ROUTER_COMMUNITY},
        {**router, "name": "fra-gw-wrong", "community": "not-the-community"},
    ]}})
    collector.start()

    # Traffic the mission sends towards the lab's router (which ignores echo requests):
    # at least 20 x 1028 bytes leave the mission's uplink.
    uplink = mission.iface
    sent_before = kernel_counter(lab, mission, uplink, "tx_bytes")
    lab.run(mission.name, ["ping", "-q", "-c", "20", "-i", "0.01", "-s", "1000", "-W", "1",
                           "198.18.1.1"])

    def polled_traffic(router: str):
        found = interfaces(collector, router)
        sent = found.get(uplink, {}).get("out_octets_total", 0)
        return found if sent >= sent_before + 20 * 1028 else None

    for name in ("fra-gw", "fra-gw-v2c"):
        found = wait_for(lambda name=name: polled_traffic(name), 30,
                         f"{name}'s traffic counters on /metrics")
        assert found[uplink]["oper_status"] == 1
        assert found[SPARE]["oper_status"] == 1
        assert found["lo"]["oper_status"] == 1
        # Read by snmpd before now: never above what the kernel counts now.
        assert found[uplink]["out_octets_total"] <= kernel_counter(lab, mission, uplink,
                                                                   "tx_bytes")
        assert found[uplink]["in_octets_total"] <= kernel_counter(lab, mission, uplink,
                                                                  "rx_bytes")
        assert found[uplink]["in_errors_total"] == 0
        assert found[uplink]["out_errors_total"] == 0

    lab.run(mission.name, ["ip", "link", "set", SPARE, "down"], check=True)
    wait_for(lambda: interfaces(collector, "fra-gw").get(SPARE, {}).get("oper_status") == 2,
             30, f"{SPARE} to show as down (ifOperStatus 2)")

    metrics = collector.metrics()
    assert not interfaces(collector, "fra-gw-wrong")
    polls = {dict(labels)["outcome"]: value for (name, labels), value in metrics.items()
             if name == "unhindered_snmp_polls_total" and dict(labels)["kind"] == "router"}
    assert polls["ok"] >= 2 and polls["error"] >= 1, polls

    status, body = collector.fetch("/metrics")
    assert status == 200
    lint = subprocess.run([promtool, "check", "metrics"], input=body.decode(),
                          capture_output=True, text=True, timeout=60)
    # promtool prints its findings and may still exit 0: any output is a failure.
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint
    collector.stop()
