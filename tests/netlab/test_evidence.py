"""Evidence that is true, in the lab: the address, answer set and resolver of a name (from
a private hosts file and resolv.conf), the system's words for an unreachable target, and
local_ok that follows the gateway as soon as it answers again."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.netlab.test_http_check import HTTP, HTTPS, HttpsLab, http_check, start_responder
from tests.netlab.test_probe_service import answer_pings_for, gateway_of
from tests.support import wait_for
from tests.support.lab.certs import SERVER_NAME, make_certs
from tests.support.lab.netns import Lab
from tests.support.spine import Collector, Probe

pytestmark = pytest.mark.netlab


@pytest.fixture
def https_lab(lab: Lab, tmp_path: Path) -> HttpsLab:
    """As test_http_check's: a mission, two targets serving HTTP(S) with the lab certs."""
    mission = lab.add_mission("KEN")
    target, other = lab.add_target(), lab.add_target()
    certs = make_certs(tmp_path / "certs",
                       [a for t in (target, other) for a in (t.ipv4, t.ipv6)])
    start_responder(lab, certs, [target, other])
    return HttpsLab(lab, mission, target, other, certs, tmp_path)


def test_a_name_reports_its_address_answers_and_resolver(https_lab: HttpsLab) -> None:
    """The name resolves through files bind-mounted over /etc/hosts and /etc/resolv.conf
    in a mount namespace of the probe's own: no resolver is asked (the nameserver named
    is a lab address that runs none), and the host's files are untouched."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to give the probe its own /etc/hosts")
    hl = https_lab
    hosts, resolv = hl.workdir / "hosts", hl.workdir / "resolv.conf"
    # Two addresses for the name, the higher one first: the answers come back sorted.
    hosts.write_text(f"127.0.0.1 localhost\n{hl.other.ipv4} {SERVER_NAME}\n"
                     f"{hl.target.ipv4} {SERVER_NAME}\n")
    resolv.write_text(f"search lab.test\nnameserver {hl.target.ipv4}\n")
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount --bind "{hosts}" /etc/hosts && '
               f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"', "sh"]
    checks = [
        http_check("https_name", f"https://{SERVER_NAME}:{HTTPS}/ok",
                   ca_file=str(hl.certs.ca_file), ip_version=4),
        {"id": "tcp_name", "kind": "tcp", "target": SERVER_NAME, "port": HTTP,
         "ip_version": 4},
    ]
    r = hl.measure(checks, wrapper=wrapper)
    addresses = sorted([hl.target.ipv4, hl.other.ipv4], key=lambda a: tuple(
        int(part) for part in a.split(".")))
    for check in ("https_name", "tcp_name"):
        assert r[check]["ok"], r[check]
        f = r[check]["figures"]
        assert f["resolver"] == hl.target.ipv4
        assert f["address"] in addresses
        # glibc returns every line of the hosts file for the name, or only the first.
        assert f["dns_answers"] in (addresses, [hl.other.ipv4]), f
    f = r["https_name"]["figures"]
    assert f["tls_verified"] is True and SERVER_NAME in f["tls_names"]


def test_unreachable_says_the_systems_error(https_lab: HttpsLab) -> None:
    hl = https_lab
    checks = [
        http_check("http", hl.url("http", HTTP, "/ok"), timeout_s=1),
        {"id": "tcp", "kind": "tcp", "target": hl.target.ipv4, "port": HTTP, "timeout_s": 1},
    ]
    hl.lab.cut(hl.mission, mode="reject")  # ICMP host unreachable: EHOSTUNREACH
    r = hl.measure(checks)
    words = os.strerror(113)  # EHOSTUNREACH on Linux: "No route to host"
    assert (r["tcp"]["reason"], r["tcp"]["detail"]) == ("unreachable", words), r["tcp"]
    assert r["http"]["reason"] == "unreachable"
    assert r["http"]["detail"] == f"{words} ({hl.url('http', HTTP, '/ok')})", r["http"]


def newest_round(probe: Probe) -> tuple[int, dict]:
    """The seq and result of the newest round in the probe's outbox (unsent while the
    mission is cut)."""
    db = sqlite3.connect(probe.outbox_path)
    try:
        seq, body = db.execute("SELECT seq, body FROM outbox ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
    finally:
        db.close()
    return seq, json.loads(body)


@pytest.mark.slow
def test_local_ok_and_local_checks_follow_the_gateway_at_once(lab, tmp_path) -> None:
    """After a gateway fault, the first rounds that reach their target again carry
    local_ok true, not the fault of up to an interval ago, and the gateway check is up
    again within seconds (its own confirmation rounds), not after its next interval."""
    mission = lab.add_mission("GHA")
    target = lab.add_target()
    lab.start_responders()
    gateway = gateway_of(mission)
    answer_pings_for(lab, gateway)
    collector = Collector(lab, tmp_path)
    collector.start()
    checks = [{"id": "internet-tcp", "kind": "tcp", "target": target.ipv4, "port": 80,
               "interval_s": 3, "timeout_s": 0.5, "confirm_count": 2,
               "confirm_interval_s": 1}]
    probe = Probe(lab, mission, tmp_path, collector, checks,
                  # Longer than the test: no scheduled local round after the first.
                  local={"gateway": gateway, "resolver": "none", "interval_s": 120})
    probe.start()

    def up(check: str) -> float | None:
        return collector.check_value("unhindered_check_up", mission.code, check)

    wait_for(lambda: up("local-gateway") == 1 and up("internet-tcp") == 1, 30,
             "both checks up")
    # Rejected rather than dropped: every round then fails at once, so none (nor its
    # re-check of the gateway) straddles the restore and sees the gateway back by chance.
    lab.cut(mission, mode="reject")
    cut_at = time.time()
    # The target's round fails, the gateway is re-checked and fails; both failures are
    # confirmed (a round and two confirmation rounds each) well within the cut.
    time.sleep(14)
    # Restored just after a failed round of the target (and its re-check of the gateway,
    # stored before it): no local round is due before the target's next round, so only
    # that round's success can bring the local side's verdict up to date.
    before = newest_round(probe)[0]
    wait_for(lambda: (r := newest_round(probe))[0] > before
             and r[1]["check_id"] == "internet-tcp" and not r[1]["ok"], 10,
             "a new failed round of the target")
    lab.restore(mission)
    restored_at = time.time()

    def gateway_up_again() -> float | None:
        since = collector.check_value("unhindered_check_state_since_timestamp_seconds",
                                      mission.code, "local-gateway")
        return since if up("local-gateway") == 1 and since and since > cut_at else None

    since = wait_for(gateway_up_again, 15, "the gateway up again at the collector")
    assert since - restored_at < 6  # within seconds, not at its next round

    stored = collector.results(probe.probe_id)
    gateway_rounds = [r for r in stored if r.check_id == "local-gateway"]
    failed = [r for r in gateway_rounds if not r.ok and cut_at < r.started_at < restored_at]
    assert len(failed) >= 3 and any(r.confirmation for r in failed), "the fault confirmed"
    assert [r for r in gateway_rounds if r.ok and r.confirmation
            and r.started_at > restored_at], "the gateway's recovery confirmed"
    tcp_rounds = [r for r in stored if r.check_id == "internet-tcp"]
    assert [r for r in tcp_rounds if not r.ok and r.local_ok is False], "the fault seen"
    reached = [r for r in tcp_rounds if r.ok and r.started_at > cut_at]
    assert reached, "rounds that reached the target after the fault"
    assert all(r.local_ok is True for r in reached), [(r.started_at, r.local_ok)
                                                       for r in reached]
    probe.stop()
    collector.stop()
