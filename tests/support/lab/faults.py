"""Interference, staged in the lab (issue 14): a resolver that lies for one name, a man in
the middle with its own CA, a block page, and `divert`, which sends one mission's traffic
for a target to one of them while every other namespace (the centre too) still reaches
the real target. What the centre's control then sees differs from what the mission sees.

Every server runs with Lab.popen in a lab namespace (killed when the lab closes), bound to
lab addresses only; `divert` is an nft rule in the lab's `net` namespace, gone with it.
"""

from __future__ import annotations

import copy
import json
import select
import subprocess
import sys
from pathlib import Path

from .certs import LabCerts
from .netns import LAB_DIR, Lab, LabError, Mission

DNS_RESPONDER = LAB_DIR / "dns_responder.py"
BLOCKPAGE_RESPONDER = LAB_DIR / "blockpage_responder.py"
MITM_RESPONDER = LAB_DIR / "mitm_responder.py"
HTTPS_RESPONDER = LAB_DIR / "https_responder.py"
READY_TIMEOUT_S = 10.0


def start(lab: Lab, ns: str, argv: list[str], log_path: Path) -> subprocess.Popen:
    """Starts a responder in `ns` and waits for its "ready" line."""
    with log_path.open("ab") as log:
        proc = lab.popen(ns, [sys.executable, *argv], stdout=subprocess.PIPE, stderr=log)
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        raise LabError(f"{argv[0]} did not start: {log_path.read_text(errors='replace')}")
    return proc


def lying_zone(zone: dict, owner: str, wrong: list[str]) -> dict:
    """`zone` (dns_responder.py's JSON) with `owner`'s A records replaced by `wrong`."""
    lie = copy.deepcopy(zone)
    lie.setdefault("records", {}).setdefault(owner, {})["A"] = list(wrong)
    return lie


def start_resolver(lab: Lab, workdir: Path, zone: dict, addresses: list[str],
                   label: str = "resolver") -> subprocess.Popen:
    """dns_responder.py serving `zone` on `addresses` (lab target addresses, in `net`)."""
    path = workdir / f"{label}-zone.json"
    path.write_text(json.dumps(zone))
    argv = [str(DNS_RESPONDER), "--zone", str(path)]
    for address in addresses:
        argv += ["--listen", address]
    return start(lab, lab.net, argv, workdir / f"{label}.log")


def start_site(lab: Lab, workdir: Path, address: str, http_port: int,
               https_port: int | None = None, certs: LabCerts | None = None
               ) -> subprocess.Popen:
    """The real site: https_responder.py (GET /ok and more) on address:http_port, and with
    `certs` the lab CA's valid certificate on address:https_port."""
    argv = [str(HTTPS_RESPONDER), "--listen", f"{address}:{http_port}"]
    if certs is not None and https_port is not None:
        argv += ["--listen-tls", f"{address}:{https_port},{certs.valid.cert_file},"
                                 f"{certs.valid.key_file}"]
    return start(lab, lab.net, argv, workdir / f"site-{address}.log")


def start_blockpage(lab: Lab, workdir: Path, address: str, port: int, status: int = 403
                    ) -> subprocess.Popen:
    return start(lab, lab.net, [str(BLOCKPAGE_RESPONDER), "--listen", f"{address}:{port}",
                                "--status", str(status)], workdir / "blockpage.log")


def start_mitm(lab: Lab, workdir: Path, address: str, port: int, certs: LabCerts,
               upstream: str) -> subprocess.Popen:
    """An interceptor on address:port presenting certs.unknown_ca (the site's name, signed
    by a CA the lab's ca.pem does not hold), relaying to `upstream` (HOST:PORT)."""
    return start(lab, lab.net, [str(MITM_RESPONDER), "--listen", f"{address}:{port}",
                                "--cert", str(certs.unknown_ca.cert_file),
                                "--key", str(certs.unknown_ca.key_file),
                                "--upstream", upstream], workdir / "mitm.log")


def divert(lab: Lab, mission: Mission, address: str, port: int, to_address: str,
           to_port: int, protocol: str = "tcp") -> None:
    """From now on, the mission's packets for address:port (IPv4) go to to_address:to_port
    instead, as a middlebox on its path would send them; nobody else's do."""
    script = "\n".join([
        "add table ip uh_divert",
        "add chain ip uh_divert pre { type nat hook prerouting priority dstnat; }",
        f"add rule ip uh_divert pre ip saddr {mission.ipv4} ip daddr {address} "
        f"{protocol} dport {port} dnat to {to_address}:{to_port}",
    ]) + "\n"
    done = lab.run(lab.net, ["nft", "-f", "-"], input=script)
    if done.returncode != 0:
        raise LabError(f"nft divert failed: {done.stderr.strip()}")
