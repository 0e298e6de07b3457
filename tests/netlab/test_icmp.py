"""The ICMP engine in the lab: both socket kinds, both families, duplicates, loss."""

from __future__ import annotations

import pytest

from tests.support.spine import measure_once

pytestmark = pytest.mark.netlab


def icmp(check_id, address, **extra) -> dict:
    return {"id": check_id, "kind": "icmp", "target": address, "count": 5,
            "packet_interval_s": 0.02, "timeout_s": 1, **extra}


@pytest.mark.parametrize("mode", ["raw", "datagram"])
def test_socket_modes_measure_and_decode_icmp_errors(lab, tmp_path, mode):
    mission = lab.add_mission("CHL")
    target = lab.add_target(delay_s=0.010)
    lab.start_responders()
    # The unprivileged datagram socket needs the process's group in ping_group_range.
    lab.run(mission.name, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
    checks = [icmp("v4", target.ipv4), icmp("v6", target.ipv6)]
    settings = {"icmp": {"socket": mode}}

    fine = measure_once(lab, mission, tmp_path, checks, **settings)
    for check, version in (("v4", 4), ("v6", 6)):
        result = fine[check]
        assert result["ok"] and result["ip_version"] == version
        figures = result["figures"]
        assert figures["received"] == 5 and figures["loss_ratio"] == 0
        assert 0.010 <= figures["rtt_min_s"] <= figures["rtt_median_s"] < 0.012
        assert figures["samples_s"] == sorted(figures["samples_s"])
        assert figures["jitter_s"] is not None and figures["jitter_s"] < 0.001

    lab.cut(mission, mode="reject")
    refused = measure_once(lab, mission, tmp_path, checks, **settings)
    for check in ("v4", "v6"):
        assert refused[check]["reason"] == "unreachable", refused[check]
        assert "unreachable" in refused[check]["detail"]
        assert refused[check]["duration_s"] < 0.5  # the errors ended the round early


def test_duplicates_are_counted_not_taken_as_replies(lab, tmp_path):
    mission = lab.add_mission("PER")
    target = lab.add_target(duplicate=True)
    lab.start_responders()
    result = measure_once(lab, mission, tmp_path, [icmp("dup", target.ipv4)])["dup"]
    figures = result["figures"]
    assert (figures["sent"], figures["received"]) == (5, 5)
    assert figures["duplicates"] >= 4  # the last duplicate may come after the round


def test_ten_percent_loss_shows_as_ten_percent(lab, tmp_path):
    mission = lab.add_mission("NPL")
    target = lab.add_target()
    lab.start_responders()
    lab.set_loss(mission, 10)
    # 500 echo requests in five concurrent rounds of 100 through the one engine.
    checks = [icmp(f"loss{i}", target.ipv4, count=100, packet_interval_s=0.01)
              for i in range(5)]
    results = measure_once(lab, mission, tmp_path, checks)
    sent = sum(r["figures"]["sent"] for r in results.values())
    received = sum(r["figures"]["received"] for r in results.values())
    assert sent == 500
    loss = 1 - received / sent
    # Binomial with p = 0.1 over 500: three standard deviations are 0.04.
    assert 0.06 <= loss <= 0.14, f"measured loss {loss:.3f}"
    assert all(r["figures"]["duplicates"] == 0 for r in results.values())
