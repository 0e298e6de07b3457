"""The http check (and the tcp check's TLS option) measured from a mission namespace by
`unhindered-probe once`, against tests/support/lab/https_responder.py in the `net` namespace with
throwaway certificates from tests/support/lab/certs.py. Every URL is an IP literal of a lab
target, except in the DNS test, whose name only a hosts file of its own resolves."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.support.lab.certs import SERVER_NAME, LabCerts, make_certs
from tests.support.lab.netns import LAB_DIR, Lab, Mission, Target
from tests.support.spine import PYTHON

pytestmark = pytest.mark.netlab

HTTP, HTTPS, EXPIRED, UNKNOWN_CA = 8080, 8443, 8444, 8445  # port 80 is tcp_responder's
CLOSED = 8081
OK_BODY_BYTES = len(b"unhindered documents: ok\n")


@dataclass
class HttpsLab:
    lab: Lab
    mission: Mission
    target: Target
    other: Target  # a second host, for redirects across hosts
    certs: LabCerts
    workdir: Path

    def url(self, scheme: str, port: int, path: str, target: Target | None = None) -> str:
        return f"{scheme}://{(target or self.target).ipv4}:{port}{path}"

    def measure(self, checks: list[dict], wrapper: list[str] | None = None) -> dict[str, dict]:
        """Run every check once in the mission namespace; results by check id."""
        config = self.workdir / "once.yaml"
        config.write_text(yaml.safe_dump({
            "probe_id": "once", "mission": self.mission.code,
            "outbox": str(self.workdir / "unused.sqlite"),
            "collector": {"urls": ["http://127.0.0.1:1/"], "token": "unused"},
            "checks": checks,
        }))
        argv = [PYTHON, "-m", "probes", "once", "--json", "-c", str(config)]
        done = self.lab.run(self.mission.name, [*(wrapper or []), *argv])
        assert done.stdout, done.stderr
        results = {r["check_id"]: r for r in map(json.loads, done.stdout.splitlines())}
        assert set(results) == {c["id"] for c in checks}, done.stderr
        return results


def start_responder(lab: Lab, certs: LabCerts, targets: list[Target]) -> None:
    argv = [PYTHON, str(LAB_DIR / "https_responder.py")]
    for t in targets:
        for host in (t.ipv4, f"[{t.ipv6}]"):
            argv += ["--listen", f"{host}:{HTTP}"]
            for port, cert in ((HTTPS, certs.valid), (EXPIRED, certs.expired),
                               (UNKNOWN_CA, certs.unknown_ca)):
                argv += ["--listen-tls", f"{host}:{port},{cert.cert_file},{cert.key_file}"]
    proc = lab.popen(lab.net, argv, stdout=subprocess.PIPE)  # killed when the lab closes
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready and proc.stdout.readline().strip() == b"ready", "https_responder did not start"


@pytest.fixture
def https_lab(lab: Lab, tmp_path: Path) -> HttpsLab:
    mission = lab.add_mission("KEN")
    target, other = lab.add_target(), lab.add_target()
    addresses = [a for t in (target, other) for a in (t.ipv4, t.ipv6)]
    certs = make_certs(tmp_path / "certs", addresses)
    start_responder(lab, certs, [target, other])
    return HttpsLab(lab, mission, target, other, certs, tmp_path)


def http_check(check_id: str, url: str, **fields) -> dict:
    return {"id": check_id, "kind": "http", "target": url, "timeout_s": 2, **fields}


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def test_success_phases_and_failure_reasons(https_lab: HttpsLab) -> None:
    hl, certs = https_lab, https_lab.certs
    ca = {"ca_file": str(certs.ca_file)}
    named = {**ca, "server_name": SERVER_NAME}
    # 302 to a relative path, then 301 to an absolute https URL on another host.
    final = hl.url("https", HTTPS, "/headers", hl.other)
    hop = "/redirect?status=301&to=" + quote(final, safe="")
    chain = hl.url("http", HTTP, "/redirect?to=" + quote(hop, safe=""))
    checks = [
        http_check("http", hl.url("http", HTTP, "/ok"), body_regex="documents: ok"),
        http_check("http6", f"http://[{hl.target.ipv6}]:{HTTP}/ok"),
        http_check("slow", hl.url("http", HTTP, "/slow?delay=0.2")),
        http_check("chunked", hl.url("http", HTTP, "/chunked?chunks=3&delay=0.25")),
        http_check("close", hl.url("http", HTTP, "/close?bytes=5000")),
        http_check("head", hl.url("http", HTTP, "/ok"), method="HEAD"),
        http_check("capped", hl.url("http", HTTP, "/big?bytes=3000000"), max_body_bytes=1000),
        http_check("https", hl.url("https", HTTPS, "/headers"), **named,
                   body_regex=f"Host: {SERVER_NAME}:{HTTPS}\r\n"),
        http_check("https_ip_san", hl.url("https", HTTPS, "/ok"), **ca),
        http_check("status", hl.url("http", HTTP, "/status/503")),
        http_check("mismatch", hl.url("http", HTTP, "/ok"), body_regex="^forbidden"),
        http_check("redirects", chain, **named, body_regex=rf"Host: {hl.other.ipv4}:{HTTPS}"),
        http_check("too_many", chain, **named, max_redirects=1),
        http_check("not_followed", chain, follow_redirects=False),
        http_check("expired", hl.url("https", EXPIRED, "/ok"), **named),
        http_check("unknown_ca", hl.url("https", UNKNOWN_CA, "/ok"), **named),
        http_check("wrong_name", hl.url("https", HTTPS, "/ok"), **ca,
                   server_name="elsewhere.lab.test"),
        http_check("no_verify", hl.url("https", EXPIRED, "/ok"), tls_verify=False),
        http_check("slow_timeout", hl.url("http", HTTP, "/slow?delay=3"), timeout_s=0.5),
        http_check("closed", hl.url("http", CLOSED, "/")),
        {"id": "tcp_tls", "kind": "tcp", "target": hl.target.ipv4, "port": HTTPS,
         "tls": True, **named},
        {"id": "tcp_tls_expired", "kind": "tcp", "target": hl.target.ipv4, "port": EXPIRED,
         "tls": True, **named},
    ]
    r = hl.measure(checks)
    failed = {k: v for k, v in r.items() if not v["ok"]}
    assert set(failed) == {"status", "mismatch", "too_many", "expired", "unknown_ca",
                           "wrong_name", "slow_timeout", "closed", "tcp_tls_expired"}, r

    # Plain HTTP: every phase but DNS (an IP literal) and TLS.
    f = r["http"]["figures"]
    assert r["http"]["ip_version"] == 4
    assert f["dns_s"] is None and f["tls_s"] is None and f["tls_version"] is None
    assert 0 < f["connect_s"] < 0.5 and 0 < f["first_byte_s"] < 0.5
    assert 0 <= f["transfer_s"] < 0.5
    assert (f["status_code"], f["http_version"], f["body_bytes"], f["body_matched"]) == (
        200, "HTTP/1.1", OK_BODY_BYTES, True)
    assert (f["redirects"], f["final_url"]) == (0, checks[0]["target"])
    assert f["connect_s"] + f["first_byte_s"] + f["transfer_s"] <= r["http"]["duration_s"]
    assert r["http6"]["ip_version"] == 6 and r["http6"]["figures"]["status_code"] == 200

    # The phases measure what they claim: a delay before the status line is first-byte
    # time; chunks 250 ms apart are transfer time. (Timestamps are taken when the event loop
    # resumes the check, which the other checks of this run can delay by some milliseconds:
    # the bounds leave room for that.)
    assert 0.2 <= r["slow"]["figures"]["first_byte_s"] < 0.5
    assert r["slow"]["figures"]["transfer_s"] < 0.1
    assert 0.35 <= r["chunked"]["figures"]["transfer_s"] < 1.0
    assert r["chunked"]["figures"]["body_bytes"] == 3 * len(b"chunk 0\n")
    assert r["close"]["figures"]["body_bytes"] == 5000
    assert r["head"]["figures"]["body_bytes"] == 0
    assert r["capped"]["figures"]["body_bytes"] == 1000

    # HTTPS: the TLS phase, the version and the earliest expiry of the verified chain,
    # which is the intermediate's; server_name is the SNI, verified name and Host header.
    f = r["https"]["figures"]
    assert 0 < f["tls_s"] < 1 and 0 < f["connect_s"] < 0.5 and 0 < f["first_byte_s"] < 0.5
    assert f["tls_version"] == "TLSv1.3" and f["body_matched"] is True
    assert when(f["tls_cert_not_after"]) == certs.intermediate_not_after
    assert certs.intermediate_not_after < certs.valid.not_after
    assert r["https_ip_san"]["figures"]["tls_version"] == "TLSv1.3"

    assert r["status"]["reason"] == "http_status"
    assert "503" in r["status"]["detail"] and r["status"]["figures"]["status_code"] == 503
    assert r["mismatch"]["reason"] == "body_mismatch"
    assert r["mismatch"]["figures"]["body_matched"] is False

    # Redirects: counted, the last request's phases (a TLS one), the final URL; the name
    # override stays with the configured host.
    f = r["redirects"]["figures"]
    assert (f["redirects"], f["final_url"], f["status_code"]) == (2, final, 200)
    assert f["tls_version"] == "TLSv1.3" and f["body_matched"] is True
    assert r["too_many"]["reason"] == "http_status"
    assert r["too_many"]["figures"]["redirects"] == 1
    assert r["too_many"]["figures"]["status_code"] == 301
    f = r["not_followed"]["figures"]
    assert (f["status_code"], f["redirects"], f["final_url"]) == (302, 0, chain)

    for check, message in (("expired", "certificate has expired"),
                           ("unknown_ca", "unable to get local issuer certificate"),
                           ("wrong_name", "Hostname mismatch"),
                           ("tcp_tls_expired", "certificate has expired")):
        assert r[check]["reason"] == "tls", r[check]
        assert message in r[check]["detail"], r[check]
        assert r[check]["figures"]["connect_s"] > 0
    f = r["no_verify"]["figures"]
    assert f["status_code"] == 200 and f["tls_version"] == "TLSv1.3"
    assert when(f["tls_cert_not_after"]) == certs.expired.not_after  # the expired leaf

    assert r["slow_timeout"]["reason"] == "timeout"
    assert "waiting for the first byte" in r["slow_timeout"]["detail"]
    assert r["slow_timeout"]["duration_s"] < 1.0
    assert r["closed"]["reason"] == "refused"

    f = r["tcp_tls"]["figures"]
    assert f["connect_s"] > 0 and f["tls_s"] > 0 and f["tls_version"] == "TLSv1.3"
    assert when(f["tls_cert_not_after"]) == certs.intermediate_not_after


def test_cut_link_reject_is_unreachable_drop_is_timeout(https_lab: HttpsLab) -> None:
    hl = https_lab
    named = {"ca_file": str(hl.certs.ca_file), "server_name": SERVER_NAME}
    checks = [
        http_check("http", hl.url("http", HTTP, "/ok"), timeout_s=1),
        http_check("https", hl.url("https", HTTPS, "/ok"), **named, timeout_s=1),
        {"id": "tcp_tls", "kind": "tcp", "target": hl.target.ipv4, "port": HTTPS,
         "tls": True, "timeout_s": 1, **named},
    ]
    hl.lab.cut(hl.mission, mode="reject")
    rejected = hl.measure(checks)
    for check in ("http", "https", "tcp_tls"):
        assert (rejected[check]["ok"], rejected[check]["reason"]) == (False, "unreachable"), \
            rejected[check]
        assert rejected[check]["duration_s"] < 0.9  # the ICMP error, not the timeout

    hl.lab.restore(hl.mission)
    hl.lab.cut(hl.mission, mode="drop")
    dropped = hl.measure(checks)
    for check in ("http", "https", "tcp_tls"):
        assert dropped[check]["reason"] == "timeout", dropped[check]
        assert "TCP connect" in dropped[check]["detail"]


def test_dns_phase_with_a_name_from_a_private_hosts_file(https_lab: HttpsLab) -> None:
    """The name resolves through a hosts file bind-mounted over /etc/hosts in a mount
    namespace of the probe's own: no resolver is asked, and the host's file is untouched.
    (The mission namespace has no route to any real resolver either.)"""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to give the probe its own /etc/hosts")
    hl = https_lab
    hosts = hl.workdir / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{hl.target.ipv4} {SERVER_NAME}\n")
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "sh"]
    checks = [
        http_check("https_name", f"https://{SERVER_NAME}:{HTTPS}/headers",
                   ca_file=str(hl.certs.ca_file), body_regex=f"Host: {SERVER_NAME}:{HTTPS}"),
        {"id": "tcp_tls_name", "kind": "tcp", "target": SERVER_NAME, "port": HTTPS,
         "tls": True, "ca_file": str(hl.certs.ca_file)},
    ]
    r = hl.measure(checks, wrapper=wrapper)
    assert r["https_name"]["ok"], r["https_name"]
    f = r["https_name"]["figures"]
    assert f["dns_s"] is not None and 0 <= f["dns_s"] < 0.5
    assert f["tls_version"] == "TLSv1.3" and f["body_matched"] is True
    assert r["tcp_tls_name"]["ok"], r["tcp_tls_name"]
