"""The dns check, run by the real probe (`unhindered-probe once`) inside a mission namespace
against tests/support/lab/dns_responder.py, which serves the test-only zone `lab.test.` on lab
target addresses in the `net` namespace. Nothing here queries any other resolver."""

from __future__ import annotations

import json
import select
import subprocess
import textwrap
from pathlib import Path

import pytest

from probes import config as probe_config
from tests.support.lab.netns import LAB_DIR
from tests.support.spine import PYTHON, measure_once
from unhindered.configfile import ConfigError

pytestmark = pytest.mark.netlab

DNS_RESPONDER = LAB_DIR / "dns_responder.py"
# Enough A records to exceed the probe's EDNS payload (1232 bytes) over UDP, and no more
# than the 100 answers a measurement carries.
BIG = [f"198.19.1.{i}" for i in range(1, 91)]
ZONE = {
    "origin": "lab.test.",
    "records": {
        "www": {"A": ["198.19.0.5", "198.19.0.6"], "AAAA": ["fd00:19::5"],
                "TXT": ['"hello lab"']},
        "alias": {"CNAME": ["www"]},
        "mx": {"MX": ["10 mail"]},
        "big": {"A": BIG},
        "slow": {"A": ["198.19.0.7"]},
        "big-slow": {"A": BIG},
    },
    "servfail": ["broken"],
    "malformed": ["garbled"],
    # big-slow: each of the UDP and TCP answers alone is within a 1 s timeout, not both.
    "delays": {"slow": 3.0, "big-slow": 0.6},
}


def start_dns_responder(lab, tmp_path: Path, addresses: list[str]) -> None:
    zone = tmp_path / "zone.json"
    zone.write_text(json.dumps(ZONE))
    argv = [PYTHON, str(DNS_RESPONDER), "--zone", str(zone)]
    for address in addresses:
        argv += ["--listen", address]
    log_path = tmp_path / "dns_responder.log"
    with log_path.open("wb") as log:
        proc = lab.popen(lab.net, argv, stdout=subprocess.PIPE, stderr=log)  # killed by lab
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        pytest.fail(f"dns_responder did not start: {log_path.read_text(errors='replace')}")


def dns_check(check_id: str, target: str, name: str, **settings) -> dict:
    return {"id": check_id, "kind": "dns", "target": target, "name": name, "timeout_s": 1,
            **settings}


def failure(result: dict) -> tuple[bool, str | None]:
    return result["ok"], result["reason"]


def test_answers_rcodes_and_tcp_fallback(lab, tmp_path):
    mission = lab.add_mission("FRA")
    resolver = lab.add_target()
    start_dns_responder(lab, tmp_path, [resolver.ipv4, resolver.ipv6])
    v4, v6 = resolver.ipv4, resolver.ipv6
    checks = [
        dns_check("a", v4, "www.lab.test"),
        dns_check("aaaa-over-v6", v6, "www.lab.test.", record_type="AAAA", ip_version=6),
        # Order, case and trailing dots of expected answers do not matter.
        dns_check("match", v4, "www.lab.test", expected_answers=["198.19.0.6", "198.19.0.5"]),
        dns_check("cname", v4, "alias.lab.test", record_type="CNAME",
                  expected_answers=["WWW.Lab.Test"]),
        dns_check("mx", v4, "mx.lab.test", record_type="MX",
                  expected_answers=["10 mail.lab.test."]),
        dns_check("txt", v4, "www.lab.test", record_type="TXT", expected_answers=["hello lab"]),
        dns_check("mismatch", v4, "www.lab.test", expected_answers=["198.19.0.5", "198.19.0.99"]),
        dns_check("nodata-expected", v4, "www.lab.test", record_type="MX", expected_answers=[]),
        dns_check("nxdomain", v4, "absent.lab.test"),
        dns_check("servfail", v4, "broken.lab.test"),
        dns_check("outside-zone", v4, "elsewhere.test"),
        dns_check("malformed", v4, "garbled.lab.test"),
        dns_check("truncated", v4, "big.lab.test", timeout_s=2),
        dns_check("slow", v4, "slow.lab.test"),  # answered after 3 s, timeout 1 s
        dns_check("truncated-slow", v4, "big-slow.lab.test"),
    ]
    r = measure_once(lab, mission, tmp_path, checks)

    a = r["a"]
    assert a["ok"] and a["reason"] is None and a["ip_version"] == 4
    assert a["kind"] == "dns" and a["target"] == v4
    assert a["figures"]["rcode"] == "NOERROR"
    assert a["figures"]["answers"] == ["198.19.0.5", "198.19.0.6"]
    assert a["figures"]["transport"] == "udp"
    assert 0 < a["figures"]["query_s"] < 0.5

    v6_result = r["aaaa-over-v6"]
    assert v6_result["ok"] and v6_result["ip_version"] == 6
    assert v6_result["figures"]["answers"] == ["fd00:19::5"]

    for check in ("match", "cname", "mx", "txt", "nodata-expected"):
        assert failure(r[check]) == (True, None), r[check]
    assert r["cname"]["figures"]["answers"] == ["www.lab.test."]
    assert r["txt"]["figures"]["answers"] == ['"hello lab"']
    assert r["nodata-expected"]["figures"]["answers"] == []

    mismatch = r["mismatch"]
    assert failure(mismatch) == (False, "unexpected_answer")
    assert mismatch["figures"]["rcode"] == "NOERROR"
    assert mismatch["figures"]["answers"] == ["198.19.0.5", "198.19.0.6"]
    assert "198.19.0.99" in mismatch["detail"] and "198.19.0.6" in mismatch["detail"]

    for check, rcode, name in (("nxdomain", "NXDOMAIN", "absent.lab.test."),
                               ("servfail", "SERVFAIL", "broken.lab.test."),
                               ("outside-zone", "REFUSED", "elsewhere.test.")):
        assert failure(r[check]) == (False, "dns"), r[check]
        assert r[check]["figures"]["rcode"] == rcode
        assert r[check]["detail"] == f"rcode {rcode} for {name} A"
        assert r[check]["figures"]["query_s"] is not None  # an answer came, just a bad one

    assert failure(r["malformed"]) == (False, "error")
    assert "malformed" in r["malformed"]["detail"]

    truncated = r["truncated"]
    assert truncated["ok"], truncated
    assert truncated["figures"]["transport"] == "tcp"
    assert sorted(truncated["figures"]["answers"]) == sorted(BIG)

    slow = r["slow"]
    assert failure(slow) == (False, "timeout")
    assert slow["figures"]["query_s"] is None and slow["figures"]["rcode"] is None
    assert slow["duration_s"] < 1.5  # the deadline holds; the late answer is not awaited

    # One deadline covers the UDP query and the TCP retry together.
    truncated_slow = r["truncated-slow"]
    assert failure(truncated_slow) == (False, "timeout")
    assert truncated_slow["figures"]["transport"] == "tcp"
    assert "over TCP" in truncated_slow["detail"]
    assert truncated_slow["duration_s"] < 1.5


def test_closed_port_cut_and_reject(lab, tmp_path):
    mission = lab.add_mission("KEN")
    resolver = lab.add_target()
    silent = lab.add_target()  # an address of `net` where nothing listens on port 53
    start_dns_responder(lab, tmp_path, [resolver.ipv4, resolver.ipv6])
    checks = [
        dns_check("v4", resolver.ipv4, "www.lab.test"),
        dns_check("v6", resolver.ipv6, "www.lab.test", record_type="AAAA"),
        dns_check("closed", silent.ipv4, "www.lab.test"),
        dns_check("closed-v6", silent.ipv6, "www.lab.test"),
    ]
    fine = measure_once(lab, mission, tmp_path, checks)
    assert fine["v4"]["ok"] and fine["v6"]["ok"]
    for check in ("closed", "closed-v6"):
        # ICMP port unreachable, reported on the probe's connected socket: no waiting.
        assert failure(fine[check]) == (False, "refused"), fine[check]
        assert fine[check]["duration_s"] < 0.5

    lab.cut(mission, mode="drop")
    dropped = measure_once(lab, mission, tmp_path, checks)
    for check in checks:
        result = dropped[check["id"]]
        assert failure(result) == (False, "timeout"), result
        assert result["figures"]["query_s"] is None

    lab.restore(mission)
    lab.cut(mission, mode="reject")
    rejected = measure_once(lab, mission, tmp_path, checks)
    for check in checks:
        result = rejected[check["id"]]
        assert failure(result) == (False, "unreachable"), result
        assert result["duration_s"] < 0.5


PROBE_YAML = """\
probe_id: fra-1
mission: FRA
outbox: outbox.sqlite
collector:
  urls: [http://127.0.0.1:9640/]
  token: secret
checks:
  - id: resolver
    kind: dns
    target: 198.19.0.1
    name: www.lab.test
"""


@pytest.mark.parametrize("old, new, field, expectation", [
    ("target: 198.19.0.1", "target: resolver.lab.test", "checks[0].target",
     "must be an IP address, not a host name"),
    ("name: www.lab.test", "name: www.lab.test\n    ip_version: 6", "checks[0].ip_version",
     "198.19.0.1 is not an IPv6 address"),
    ("name: www.lab.test", "name: www..lab.test", "checks[0].name", "not a valid DNS name"),
    ("name: www.lab.test", "name: www.lab.test\n    expected_answers: [www.lab.test]",
     "checks[0].expected_answers", "'www.lab.test' is not a valid A record"),
])
def test_config_refuses_what_cannot_be_queried(tmp_path, old, new, field, expectation):
    path = tmp_path / "probe.yaml"
    path.write_text(textwrap.dedent(PROBE_YAML).replace(old, new, 1))
    assert old in PROBE_YAML
    with pytest.raises(ConfigError) as caught:
        probe_config.load(path)
    message = str(caught.value)
    assert f"{field}: " in message and expectation in message, message


def test_config_accepts_an_ipv6_resolver(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(PROBE_YAML.replace("198.19.0.1", "fd00:19::1"))
    check = probe_config.load(path).checks[0]
    assert (check.target, check.port, check.record_type) == ("fd00:19::1", 53, "A")
    assert check.expected_answers is None
