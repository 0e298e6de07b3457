"""Each check kind's failure reasons, provoked in the lab and read from `unhindered-probe
once`, which prints the measurements as JSON lines."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.netlab.spine import PYTHON

pytestmark = pytest.mark.netlab


def measure_once(lab, mission, tmp_path, checks: list[dict], **settings) -> dict[str, dict]:
    """Runs `unhindered-probe once` in the mission's namespace; results by check id."""
    config = tmp_path / "once.yaml"
    config.write_text(yaml.safe_dump({
        "probe_id": "once", "mission": mission.code, "outbox": str(tmp_path / "unused.sqlite"),
        "collector": {"urls": ["http://127.0.0.1:1/"], "token": "unused"},
        "checks": checks,
        **settings,
    }))
    done = lab.run(mission.name, [PYTHON, "-m", "probes", "once", "-c", str(config)])
    assert done.stdout, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    return {r["check_id"]: r for r in results}


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
