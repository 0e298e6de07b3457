"""The shipped examples, exactly as shipped, pass check-config and start.

Each program runs inside a network namespace made here (only `lo`, up) whose resolv.conf
names an address inside it, so the examples' documentation addresses and collector URL
reach nobody and no DNS query leaves it; and inside a private mount namespace where a
fresh tmpfs stands for /var/lib (holding an empty /var/lib/unhindered, as the units'
StateDirectory= makes it), so the host's directories are never touched.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_for

pytestmark = [pytest.mark.netlab]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NETNS_ETC = Path("/etc/netns")


@pytest.fixture
def netns(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates a network namespace and mounts in a private "
                    "mount namespace")
    for program in ("ip", "unshare", "mount"):
        if shutil.which(program) is None:
            pytest.skip(f"needs {program}")
    name = f"uhex-{secrets.token_hex(4)}"
    made_etc = not NETNS_ETC.exists()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        # `ip netns exec` binds these over /etc: the resolver is the namespace's own
        # loopback, where nothing answers, so a name lookup ends there, refused.
        (NETNS_ETC / name).mkdir(parents=True)
        (NETNS_ETC / name / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        # Host names by files and DNS only: no NSS module that asks a daemon outside the
        # namespace over a Unix socket (mdns, systemd-resolved).
        (NETNS_ETC / name / "nsswitch.conf").write_text(
            "passwd: files\ngroup: files\nhosts: files dns\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        if made_etc:
            with_others = NETNS_ETC.exists() and any(NETNS_ETC.iterdir())
            if not with_others:
                shutil.rmtree(NETNS_ETC, ignore_errors=True)


def inside(netns: str, script: str) -> list[str]:
    """argv running the shell script in the network namespace, in a private mount
    namespace with a fresh /var/lib. exec in the script keeps one process throughout."""
    prologue = ("mount -t tmpfs -o mode=0755 unhindered-state /var/lib && "
                "mkdir -m 0750 /var/lib/unhindered && ")
    return ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
            "sh", "-ec", prologue + script]


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd="/")


def stop(process: subprocess.Popen, log: Path) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    return text


def test_the_probe_example_passes_check_config_and_runs_as_shipped(netns, tmp_path):
    example = ROOT / "deploy" / "examples" / "probe.yaml"
    probe = shlex.quote(str(BIN / "unhindered-probe"))
    config = shlex.quote(str(example))
    log = tmp_path / "probe.log"
    # check-config on the first start (an empty state directory: enrollment will write
    # the credential); then run as after enrollment, with the credential it saved.
    process = start(inside(netns, (
        f"{probe} check-config -c {config} && "
        "umask 077 && echo uh1.example-credential > /var/lib/unhindered/probe.token && "
        f"exec {probe} run -c {config}")), log)
    try:
        wait_for(lambda: "probe fra-1 (FRA) started" in log.read_text()
                 or process.poll() is not None, 15, "the probe to start")
        text = log.read_text()
        assert f"{example}: valid, 4 checks for probe fra-1 (FRA)" in text, text
        assert "started: 4 checks" in text and "0 of the local side" in text, text
        # Running: it asks the centre for its check list, the name lookup of the
        # example's collector fails inside the namespace, and it carries on.
        wait_for(lambda: "central checks: https://collector.example.org/" in log.read_text()
                 or process.poll() is not None, 10, "the probe's first central poll")
        assert process.poll() is None, log.read_text()
    finally:
        text = stop(process, log)
    assert "probe fra-1 stopped" in text, text


def test_the_collector_example_passes_check_config_and_serves_as_shipped(netns, tmp_path):
    example = ROOT / "deploy" / "examples" / "collector.yaml"
    collector = shlex.quote(str(BIN / "unhindered-collector"))
    config = shlex.quote(str(example))
    log = tmp_path / "collector.log"
    process = start(inside(netns, (f"{collector} -c {config} check-config && "
                                   f"exec {collector} -c {config} serve")), log)
    try:
        wait_for(lambda: "listening on" in log.read_text() or process.poll() is not None,
                 15, "the collector to listen")
        text = log.read_text()
        assert f"{example}: valid; inventory of" in text, text
        assert "unhindered-collector listening on http://127.0.0.1:9640/" in text, text
        # It answers, in its namespace (the host's port 9640 is not involved).
        health = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c",
             "import urllib.request; print(urllib.request.urlopen("
             "'http://127.0.0.1:9640/healthz', timeout=5).status)"],
            capture_output=True, text=True, timeout=15)
        assert health.stdout.strip() == "200", health.stderr
        assert process.poll() is None, log.read_text()
    finally:
        stop(process, log)
