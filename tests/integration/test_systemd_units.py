"""The shipped systemd units (deploy/systemd/): valid for systemd, hardened, with enough
descriptors for the collector's connection limit, and the programs they start still work
under their strictest option, MemoryDenyWriteExecute=."""

from __future__ import annotations

import ctypes
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from collector.config import LimitsSettings
from collector.web.serve import NOFILE_RESERVE
from tests.support import free_port, require_program, wait_for
from tests.support.systemd import add_host_program, add_system_units, exec_commands, verify

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("unhindered-collector.service", "unhindered-probe.service")
# `systemd-analyze security` with systemd 252 (Debian 12) scores both units 1.8 "OK"; a
# lower score is always welcome.
MAX_EXPOSURE = 2.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # Linux 6.3: MemoryDenyWriteExecute's rule


def root_with(unit: str, tmp_path: Path) -> Path:
    """A root directory for `systemd-analyze verify --root`: the unit byte for byte as
    shipped, systemd's own units and the unit's programs. Those in /opt/unhindered/venv are
    this virtualenv's entry points of the same name (tests/integration/test_install.py
    verifies the units as the installers install them, with the real ones)."""
    root = tmp_path / unit
    add_system_units(root)
    (root / "etc/systemd/system").mkdir(parents=True)
    text = (ROOT / "deploy/systemd" / unit).read_text()
    (root / "etc/systemd/system" / unit).write_text(text)
    for command in exec_commands(text):
        if command.startswith("/opt/unhindered/venv/bin/"):
            target = root / command.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(sys.executable).parent / Path(command).name, target)
        else:
            add_host_program(root, command)
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_valid_for_systemd(unit, tmp_path):
    verify(root_with(unit, tmp_path), unit)


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_hardened(unit):
    analyze = require_program("systemd-analyze", "systemd")
    done = subprocess.run([analyze, "security", "--offline=yes",
                           str(ROOT / "deploy/systemd" / unit)],
                          capture_output=True, text=True)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert score, done.stdout + done.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, done.stdout


# Only what each program needs: the probe's raw ICMP sockets, both programs' SNMP ports.
CAPABILITIES = {"unhindered-collector.service": {"CAP_NET_BIND_SERVICE"},
                "unhindered-probe.service": {"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}}


@pytest.mark.parametrize("unit", UNITS)
def test_unit_runs_as_the_service_user_with_its_state_and_capabilities(unit):
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "deploy/systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    assert (settings["User"], settings["Group"]) == (["unhindered"], ["unhindered"])
    assert settings["StateDirectory"] == ["unhindered"]
    assert settings["ProtectSystem"] == ["strict"]  # /etc/unhindered is read-only
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(" ".join(settings[key]).split()) == CAPABILITIES[unit], key
    assert all("/etc/unhindered/" in line for line in settings["ExecStart"])


def test_collector_unit_has_descriptors_for_its_connection_limit():
    text = (ROOT / "deploy/systemd/unhindered-collector.service").read_text()
    nofile = re.search(r"^LimitNOFILE=(\d+)$", text, re.M)
    assert nofile, "without LimitNOFILE= a collector has 1,024 descriptors"
    default = LimitsSettings().max_connections
    assert int(nofile.group(1)) >= default + NOFILE_RESERVE


def memory_deny_write_execute() -> None:
    """What MemoryDenyWriteExecute=yes enforces, for this process and its children: no
    memory both writable and executable, none made executable later."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def test_the_programs_run_under_memory_deny_write_execute(tmp_path):
    """Python itself writes no code at run time, but a library could (a JIT, libffi's
    closures for ctypes callbacks). systemd 252 enforces the option with a seccomp filter;
    the kernel's own rule (PR_SET_MDWE, Linux 6.3) is the same and needs no systemd."""
    supported = subprocess.run([sys.executable, "-c", "import ctypes, sys; sys.exit(ctypes."
                                f"CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, "
                                "0, 0, 0) != 0)"])
    if supported.returncode:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 and later) to check with")
    port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'c.sqlite'}"},
                                      "listen": {"host": "127.0.0.1", "port": port}}))
    probe_config = tmp_path / "probe.yaml"
    probe_config.write_text(yaml.safe_dump({
        "probe_id": "fra-1", "mission": "FRA", "outbox": str(tmp_path / "outbox.sqlite"),
        "collector": {"urls": [f"http://127.0.0.1:{port}/"], "token": "unused"},
        "checks": [{"id": "collector", "kind": "http", "target": f"http://127.0.0.1:{port}/"}],
        "local": {"gateway": "none", "resolver": "none"},
    }))
    with open(tmp_path / "collector.log", "w") as log:
        collector = subprocess.Popen([sys.executable, "-m", "collector.cli", "-c", str(config),
                                      "serve"], stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=memory_deny_write_execute)
    try:
        for path in ("/healthz", "/metrics", "/status", "/api/v1/openapi.json"):
            wait_for(lambda p=path: urllib.request.urlopen(
                f"http://127.0.0.1:{port}{p}", timeout=2).status == 200, 30, f"GET {path}")
        # The probe measures the collector: `once` exits 0 only when every check succeeds.
        once = subprocess.run([sys.executable, "-m", "probes", "once", "--json", "-c",
                               str(probe_config)],
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=memory_deny_write_execute)
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(15) == 0
    assert once.returncode == 0, once.stdout + once.stderr
    assert '"check_id":"collector"' in once.stdout.replace(" ", "")
