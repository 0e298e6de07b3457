"""`systemd-analyze verify` of the project's units in a root directory of the test's own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import require_program


def exec_commands(unit_text: str) -> list[str]:
    """The programs of the unit's Exec*= lines, without systemd's prefixes (-, @, +, !)."""
    return [re.sub(r"^[-@:+!]+", "", line.split("=", 1)[1].split()[0])
            for line in unit_text.splitlines() if line.startswith("Exec")]


def add_system_units(root: Path) -> None:
    """systemd's own units, into root: verify resolves the units' default dependencies
    (sysinit.target and the like) there."""
    if (root / "usr/lib/systemd/system/sysinit.target").exists():
        return
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            shutil.copytree(candidate, root / "usr/lib/systemd/system", symlinks=True)
            return
    pytest.fail("systemd is installed but its units (sysinit.target) are not")


def add_host_program(root: Path, command: str) -> None:
    """The host's program of that name at that path under root (e.g. /bin/kill)."""
    source = Path(shutil.which(Path(command).name) or command)
    assert source.exists(), f"a unit runs {command}, which is nowhere here"
    target = root / command.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)


def verify(root: Path, unit: str) -> None:
    """Fails the test unless `systemd-analyze verify --root=root unit` is silent: it exits 0
    on an unknown or malformed setting and only warns. It insists that each Exec*= program
    exists under root and is executable."""
    analyze = require_program("systemd-analyze", "systemd")
    done = subprocess.run([analyze, "verify", f"--root={root}", unit],
                          capture_output=True, text=True)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        f"systemd-analyze verify {unit}:\n{done.stdout}{done.stderr}")
