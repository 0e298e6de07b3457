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

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("unhindered-collector.service", "unhindered-probe.service")
# `systemd-analyze security` with systemd 252 (Debian 12) scores both units 1.8 "OK"; as
# shipped before issue 12 they scored 6.0 and 6.2 "MEDIUM". A lower score is always welcome.
MAX_EXPOSURE = 2.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # Linux 6.3: MemoryDenyWriteExecute's rule


def system_units() -> Path:
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    pytest.fail("systemd is installed but its units (sysinit.target) are not")


def commands(unit_text: str) -> list[str]:
    """The programs of the unit's Exec*= lines, without systemd's prefixes (-, @, +, !)."""
    return [re.sub(r"^[-@:+!]+", "", line.split("=", 1)[1].split()[0])
            for line in unit_text.splitlines() if line.startswith("Exec")]


def root_with(unit: str, tmp_path: Path) -> Path:
    """A root directory for `systemd-analyze verify --root`: the unit byte for byte as
    shipped, systemd's own units (verify resolves the default dependencies such as
    sysinit.target) and, where the unit expects them, its programs. Verify insists that
    each Exec*= command exists and is executable, and /opt/unhindered/venv, where the
    README installs Unhindered, does not exist here: the copies put there are this
    virtualenv's entry points of the same name (and the host's own /bin/kill)."""
    root = tmp_path / unit
    shutil.copytree(system_units(), root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    text = (ROOT / "deploy/systemd" / unit).read_text()
    (root / "etc/systemd/system" / unit).write_text(text)
    for command in commands(text):
        if command.startswith("/opt/unhindered/venv/bin/"):
            source = Path(sys.executable).parent / Path(command).name
        else:
            source = Path(shutil.which(Path(command).name) or command)
        assert source.exists(), f"{unit} runs {command}, which is nowhere here"
        target = root / command.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_valid_for_systemd(unit, tmp_path):
    analyze = require_program("systemd-analyze", "systemd")
    done = subprocess.run([analyze, "verify", f"--root={root_with(unit, tmp_path)}", unit],
                          capture_output=True, text=True)
    # verify exits 0 on an unknown or malformed setting and only warns: any output counts.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_hardened(unit):
    analyze = require_program("systemd-analyze", "systemd")
    done = subprocess.run([analyze, "security", "--offline=yes",
                           str(ROOT / "deploy/systemd" / unit)],
                          capture_output=True, text=True)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert score, done.stdout + done.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, done.stdout


def test_collector_unit_has_descriptors_for_its_connection_limit():
    text = (ROOT / "deploy/systemd/unhindered-collector.service").read_text()
    nofile = re.search(r"^LimitNOFILE=(\d+)$", text, re.M)
    assert nofile, "without LimitNOFILE= a collector has 1,024 descriptors (issue 12, case 3)"
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
        once = subprocess.run([sys.executable, "-m", "probes", "once", "-c", str(probe_config)],
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=memory_deny_write_execute)
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(15) == 0
    assert once.returncode == 0, once.stdout + once.stderr
    assert '"check_id":"collector"' in once.stdout.replace(" ", "")
