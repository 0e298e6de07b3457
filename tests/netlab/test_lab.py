"""Tests of the network lab itself (namespaces, responders, cuts, loss, teardown)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
import urllib.error

import pytest

from tests.support.lab.netns import Lab, Mission, list_netns

pytestmark = pytest.mark.netlab

RTT = re.compile(r"time=([\d.]+) ms")
LOSS = re.compile(r"([\d.]+)% packet loss")


def ping(
    lab: Lab, mission: Mission, address: str, count: int, interval: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    family = "-6" if ":" in address else "-4"
    # -W 1: with no replies at all, ping would otherwise linger 10 s after the last request.
    argv = ["ping", family, "-n", "-c", str(count), "-i", str(interval), "-W", "1", *extra, address]
    return lab.run(mission.name, argv, timeout=30)


def rtts(output: str) -> list[float]:
    return [float(m) for m in RTT.findall(output)]


def loss_percent(output: str) -> float:
    match = LOSS.search(output)
    assert match, output
    return float(match.group(1))


def test_ping_rtt_follows_target_delay(lab: Lab) -> None:
    mission = lab.add_mission("fra")
    slow = lab.add_target(delay_s=0.020)
    fast = lab.add_target(delay_s=0.0)
    lab.start_responders()

    for address in (slow.ipv4, slow.ipv6):
        result = ping(lab, mission, address, 20, 0.05)
        times = rtts(result.stdout)
        assert len(times) == 20, result.stdout
        assert abs(statistics.median(times) - 20.0) <= 1.0, result.stdout
        assert f"from {address}:" in result.stdout  # replies come from the target address

    for address in (fast.ipv4, fast.ipv6):
        result = ping(lab, mission, address, 10, 0.02)
        times = rtts(result.stdout)
        assert len(times) == 10, result.stdout
        assert statistics.median(times) < 3.0, result.stdout


def test_target_added_after_start_restarts_responders(lab: Lab) -> None:
    mission = lab.add_mission("ger")
    lab.add_target(delay_s=0.0)
    lab.start_responders()
    late = lab.add_target(delay_s=0.010)
    result = ping(lab, mission, late.ipv4, 3, 0.05)
    assert len(rtts(result.stdout)) == 3, result.stdout
    status, _, _ = lab.fetch(mission.name, f"http://{late.ipv4}/")
    assert status == 200


def test_duplicate_target_answers_twice(lab: Lab) -> None:
    mission = lab.add_mission("dup")
    target = lab.add_target(duplicate=True)
    lab.start_responders()
    for address in (target.ipv4, target.ipv6):
        result = ping(lab, mission, address, 4, 0.05)
        # ping exits on the last reply, usually before that one's duplicate arrives.
        assert result.stdout.count("(DUP!)") >= 3, result.stdout


def test_cut_drop_and_restore(lab: Lab) -> None:
    cut_off = lab.add_mission("aaa")
    other = lab.add_mission("bbb")
    target = lab.add_target()
    lab.start_responders()

    lab.cut(cut_off, "drop")
    for address in (target.ipv4, target.ipv6, lab.centre.ipv4, lab.centre.ipv6):
        result = ping(lab, cut_off, address, 3, 0.1)
        assert result.returncode != 0, result.stdout
        assert rtts(result.stdout) == [], result.stdout
        assert "Unreachable" not in result.stdout  # silent drop
        assert len(rtts(ping(lab, other, address, 3, 0.05).stdout)) == 3
    with pytest.raises((urllib.error.URLError, TimeoutError, OSError)):
        lab.fetch(cut_off.name, f"http://{target.ipv4}/", timeout=0.5)

    lab.restore(cut_off)
    for address in (target.ipv4, target.ipv6, lab.centre.ipv4, lab.centre.ipv6):
        result = ping(lab, cut_off, address, 3, 0.05)
        assert len(rtts(result.stdout)) == 3, result.stdout


def test_block_one_target_for_one_mission(lab: Lab) -> None:
    blocked, other = lab.add_mission("blk"), lab.add_mission("ok")
    target, spared = lab.add_target(), lab.add_target()
    lab.start_responders()
    lab.block(blocked, target)
    for address in (target.ipv4, target.ipv6):
        assert rtts(ping(lab, blocked, address, 3, 0.1).stdout) == []
        assert len(rtts(ping(lab, other, address, 3, 0.05).stdout)) == 3
    # The rest of the mission's paths, the centre's included, still work.
    for address in (spared.ipv4, lab.centre.ipv4, lab.centre.ipv6):
        assert len(rtts(ping(lab, blocked, address, 3, 0.05).stdout)) == 3
    lab.unblock(blocked, target)
    assert len(rtts(ping(lab, blocked, target.ipv4, 3, 0.05).stdout)) == 3


def test_cut_reject_reports_unreachable(lab: Lab) -> None:
    mission = lab.add_mission("rej")
    target = lab.add_target()
    lab.start_responders()
    lab.cut(mission, "reject")

    result = ping(lab, mission, target.ipv4, 2, 0.1)
    assert "Destination Host Unreachable" in result.stdout, result.stdout
    result = ping(lab, mission, target.ipv6, 2, 0.1)
    assert "Address unreachable" in result.stdout, result.stdout
    result = ping(lab, mission, lab.centre.ipv4, 2, 0.1)
    assert "Destination Host Unreachable" in result.stdout, result.stdout

    started = time.monotonic()
    with pytest.raises(urllib.error.URLError) as excinfo:
        lab.fetch(mission.name, f"http://{target.ipv4}/", timeout=5)
    assert time.monotonic() - started < 1.0  # an error, not a timeout
    assert "No route to host" in str(excinfo.value)


def test_random_loss(lab: Lab) -> None:
    mission = lab.add_mission("lossy")
    target = lab.add_target()
    lab.start_responders()

    lab.set_loss(mission, 20)
    result = ping(lab, mission, target.ipv4, 300, 0.01, "-q")
    assert 10.0 <= loss_percent(result.stdout) <= 30.0, result.stdout

    lab.set_loss(mission, 0)
    result = ping(lab, mission, target.ipv4, 30, 0.01, "-q")
    assert loss_percent(result.stdout) == 0.0, result.stdout


def test_fetch_from_mission_waits_for_target_delay(lab: Lab) -> None:
    mission = lab.add_mission("http")
    target = lab.add_target(delay_s=0.050)
    lab.start_responders(tcp_ports=(80, 8080))

    for url in (
        f"http://{target.ipv4}/",
        f"http://[{target.ipv6}]/",
        f"http://{target.ipv4}:8080/x",
    ):
        started = time.monotonic()
        status, headers, body = lab.fetch(mission.name, url)
        elapsed = time.monotonic() - started
        assert status == 200
        assert headers["Connection"] == "close"
        assert body.startswith(b"unhindered lab target")
        assert 0.050 <= elapsed < 1.0

    post = lab.fetch(mission.name, f"http://{target.ipv4}/", method="POST", data=b"x" * 5000)
    assert post[0] == 200
    with pytest.raises(ValueError):
        lab.fetch(mission.name, "http://example.invalid/")  # no DNS from the lab


def test_close_removes_namespaces_and_processes(lab: Lab) -> None:
    mission = lab.add_mission("gone")
    lab.add_target(delay_s=0.0)
    lab.start_responders()
    sleeper = lab.popen(mission.name, ["sleep", "600"])
    names = [lab.net, lab.centre.name, mission.name]
    assert set(names) <= set(list_netns())
    pids = [proc.pid for proc in lab._procs]
    assert len(pids) == 3  # icmp + tcp responders, sleeper

    lab.close()
    lab.close()  # idempotent

    assert not set(names) & set(list_netns())
    assert sleeper.returncode is not None
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} still exists"
    with pytest.raises(Exception, match="closed"):
        lab.add_mission("again")
