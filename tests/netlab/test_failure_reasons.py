"""Each check kind's failure reasons, provoked in the lab and read from `unhindered-probe
once`, which prints the measurements as JSON lines."""

from __future__ import annotations

import pytest

from tests.support.spine import measure_once

pytestmark = pytest.mark.netlab


def test_reasons_timeout_refused_unreachable(lab, tmp_path):
    mission = lab.add_mission("KEN")
    target = lab.add_target()
    lab.start_responders()
    checks = [
        {"id": "icmp", "kind": "icmp", "target": target.ipv4, "count": 2,
         "packet_interval_s": 0.05, "timeout_s": 1},
        {"id": "icmp6", "kind": "icmp", "target": target.ipv6, "count": 2,
         "packet_interval_s": 0.05, "timeout_s": 1},
        {"id": "tcp", "kind": "tcp", "target": target.ipv4, "port": 80, "timeout_s": 1},
        {"id": "closed", "kind": "tcp", "target": target.ipv4, "port": 81, "timeout_s": 1},
    ]
    fine = measure_once(lab, mission, tmp_path, checks)
    assert fine["icmp"]["ok"] and fine["icmp"]["ip_version"] == 4
    assert fine["icmp"]["figures"]["received"] == 2
    assert fine["icmp6"]["ok"] and fine["icmp6"]["ip_version"] == 6
    assert fine["tcp"]["ok"] and fine["tcp"]["figures"]["connect_s"] > 0
    assert (fine["closed"]["ok"], fine["closed"]["reason"]) == (False, "refused")

    lab.cut(mission, mode="drop")
    silent = measure_once(lab, mission, tmp_path, checks)
    for check in ("icmp", "icmp6", "tcp"):
        assert (silent[check]["ok"], silent[check]["reason"]) == (False, "timeout")
    assert silent["icmp"]["figures"]["loss_ratio"] == 1.0
    assert silent["icmp"]["figures"]["rtt_median_s"] is None  # no sample, not a zero

    lab.restore(mission)
    lab.cut(mission, mode="reject")
    refused = measure_once(lab, mission, tmp_path, checks)
    for check in ("icmp", "icmp6", "tcp"):
        assert (refused[check]["ok"], refused[check]["reason"]) == (False, "unreachable"), \
            refused[check]
    # The ICMP error is attributed to our request and says where it came from; it arrives
    # long before the timeout would have.
    assert refused["icmp"]["detail"].startswith("destination unreachable from ")
    assert refused["icmp"]["duration_s"] < 0.9
