"""What the benchmark parts share: programs, process figures, statistics, tables, configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.support.lab / tests.netlab are imported from the checkout
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# program -> the Debian package that provides it
PACKAGES = {
    "ip": "iproute2",
    "nft": "nftables",
    "ping": "iputils-ping",
    "fping": "fping",
    "prometheus-blackbox-exporter": "prometheus-blackbox-exporter",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


class BenchError(RuntimeError):
    pass


def ensure_programs(*programs: str) -> list[str]:
    """Installs the Debian packages of missing programs when root; returns what is still
    missing, so that a part can say so instead of failing half-way."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return []
    packages = sorted({PACKAGES[p] for p in missing})
    if os.geteuid() != 0:
        print(f"missing {', '.join(missing)}: run as root, or 'apt-get install -y "
              f"{' '.join(packages)}'", file=sys.stderr)
        return missing
    print(f"installing Debian packages: {' '.join(packages)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        # A fresh machine may not have package lists yet.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        subprocess.run(install, capture_output=True, env=env)
    still = [p for p in programs if shutil.which(p) is None]
    if still:
        print(f"apt-get could not provide {', '.join(still)}", file=sys.stderr)
    return still


# --- process figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProcFigures:
    rss_kib: int  # VmRSS: resident now
    hwm_kib: int  # VmHWM: the most it was ever resident
    anon_kib: int  # RssAnon: the heap and other private memory
    file_kib: int  # RssFile: mapped files, mostly the interpreter and shared libraries
    user_s: float  # CPU time so far, in user mode
    sys_s: float  # and in the kernel

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def proc_figures(pid: int) -> ProcFigures:
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    # The command name may hold spaces or parentheses: the fields start after the last ")".
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15 of proc(5)
    return ProcFigures(
        rss_kib=int(status["VmRSS"].split()[0]),
        hwm_kib=int(status["VmHWM"].split()[0]),
        anon_kib=int(status["RssAnon"].split()[0]),
        file_kib=int(status["RssFile"].split()[0]),
        user_s=utime / CLOCK_TICKS,
        sys_s=stime / CLOCK_TICKS,
    )


def exec_pid(proc: subprocess.Popen[Any], expect: str) -> int:
    """`ip netns exec` replaces itself with the program, so Popen's pid is the program's;
    checked, because reading the wrong process's figures would be silently wrong."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if expect in cmdline and not cmdline.startswith("ip "):
            return proc.pid
        time.sleep(0.01)
    raise BenchError(f"pid {proc.pid} is not {expect!r}: {cmdline!r}")


# --- statistics --------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on a copy."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- output ------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@dataclass
class Goal:
    name: str
    ours: str
    reference: str
    ratio: str
    met: bool | None  # None: could not be measured


@dataclass
class PartResult:
    name: str
    text: str = ""  # the part's own tables, printed as soon as it ends
    goals: list[Goal] = field(default_factory=list)
    seconds: float = 0.0


# --- the probe's configuration -----------------------------------------------------------


def icmp_check(check_id: str, target: str, **settings: Any) -> dict[str, Any]:
    return {"id": check_id, "kind": "icmp", "target": target, **settings}


def write_probe_config(path: Path, mission_code: str, checks: list[dict[str, Any]],
                       collector: dict[str, Any] | None = None,
                       icmp: dict[str, Any] | None = None, probe_id: str | None = None
                       ) -> Path:
    """A probe config that never leaves the lab: no local gateway or resolver ("auto"
    would read the host's resolver), and for `once` a collector URL that is never used."""
    config: dict[str, Any] = {
        "probe_id": probe_id or f"{mission_code.lower()}-1",
        "mission": mission_code,
        "outbox": str(path.with_suffix(".outbox.sqlite")),
        "collector": collector or {"urls": ["http://127.0.0.1:1/"], "token": "unused"},
        "checks": checks,
        "local": {"gateway": "none", "resolver": "none"},
        "logging": {"level": "INFO"},  # production level: DEBUG would cost CPU per round
    }
    if icmp:
        config["icmp"] = icmp
    path.write_text(yaml.safe_dump(config))
    return path


def run_once(lab: Any, mission: Any, config: Path, timeout: float = 120
             ) -> tuple[list[dict[str, Any]], float]:
    """`python -m probes once` in the mission's namespace: (results, wall time in s)."""
    started = time.perf_counter()
    done = lab.run(mission.name, [PYTHON, "-m", "probes", "once", "--json", "-c", str(config)],
                   timeout=timeout)
    wall = time.perf_counter() - started
    if not done.stdout:
        raise BenchError(f"probes once printed nothing: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines()], wall
