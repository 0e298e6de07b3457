"""Part snmp: what the SNMP agent and notifications cost the probe, in memory and CPU.

Two real probes (`python -m probes run`) measure the same 10 TCP checks on loopback
(interval 1 s) at the same time; one has no `snmp:` section, the other runs the agent and
sends v3 informs to a real snmptrapd on loopback. After a warm-up, net-snmp's snmpwalk
reads the SNMP probe's whole MIB (v3 authPriv) once a second through a fixed window; at the
end each probe's RSS, RSS peak and CPU time over the window are read from /proc. The probe
without SNMP is the peer: the ratio is the price of SNMP. Goal (issue 3): the probe with
the SNMP agent stays within 64 MiB resident at its peak."""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import PYTHON, BenchError, Goal, PartResult, fmt, proc_figures, table
from tests.support import free_port
from tests.support.snmp import AUTH_KEY, MIB_ARGS, PRIV_KEY, USER, program, start_snmptrapd, v3

CHECKS = 10
WARMUP_S = 6.0
RSS_GOAL_MIB = 64.0


def _config(workdir: Path, name: str, port: int, snmp: dict | None) -> Path:
    config = {
        "probe_id": name, "mission": "BEN", "outbox": str(workdir / f"{name}.sqlite"),
        "collector": {"urls": ["http://127.0.0.1:1/"], "token": "unused",
                      "backoff_initial_s": 30, "backoff_max_s": 60},
        "local": {"gateway": "none", "resolver": "none"},
        "checks": [{"id": f"tcp-{i}", "kind": "tcp", "target": "127.0.0.1", "port": port,
                    "interval_s": 1, "timeout_s": 0.5} for i in range(CHECKS)],
        "logging": {"level": "WARNING"},
        **({"snmp": snmp} if snmp else {}),
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(seconds: float = 20.0) -> PartResult:
    result = PartResult("snmp")
    listener = socket.create_server(("127.0.0.1", 0))
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-snmp-") as tmp:
        workdir = Path(tmp)
        try:
            trapd_port = free_port(socket.SOCK_DGRAM)
            trapd = start_snmptrapd(subprocess.Popen, workdir / "trapd",
                                    f"127.0.0.1:{trapd_port}")
            processes.append(trapd.process)
            agent = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
            snmp = {"agent": {"listen": agent},
                    "users": [{"name": USER, "auth_key": AUTH_KEY, "priv_key": PRIV_KEY}],
                    "notify": [{"name": "trapd", "address": f"127.0.0.1:{trapd_port}",
                                "user": USER}]}
            port = listener.getsockname()[1]
            probes = {"probe without SNMP": _config(workdir, "plain", port, None),
                      "probe with SNMP agent": _config(workdir, "snmp", port, snmp)}
            started = {}
            for label, path in probes.items():
                with (workdir / f"{path.stem}.log").open("w") as log:
                    started[label] = subprocess.Popen(
                        [PYTHON, "-m", "probes", "run", "-c", str(path)], stdout=log,
                        stderr=subprocess.STDOUT)
                processes.append(started[label])
            time.sleep(WARMUP_S)
            before = {label: proc_figures(p.pid) for label, p in started.items()}
            walk_s, rows = [], 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t = time.perf_counter()
                done = subprocess.run([program("snmpwalk"), "-t", "2", *MIB_ARGS, "-OQs",
                                       *v3(), agent, "UNHINDERED-MIB::unhinderedMIB"],
                                      capture_output=True, text=True, timeout=30)
                walk_s.append(time.perf_counter() - t)
                if done.returncode != 0:
                    raise BenchError(f"snmpwalk failed: {done.stderr}")
                rows = done.stdout.count("unhCheckName.")
                time.sleep(max(0.0, 1 - walk_s[-1]))
            after = {label: proc_figures(p.pid) for label, p in started.items()}
            received = trapd.received().count("UNHINDERED-MIB::checkUp")
        finally:
            for p in processes:
                p.terminate()
            for p in processes:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            listener.close()
    lines = []
    for label in started:
        a, b = after[label], before[label]
        lines.append([label, fmt(a.rss_mib, 1), fmt(a.hwm_mib, 1),
                      f"{a.anon_kib / 1024:.1f}+{a.file_kib / 1024:.1f}",
                      fmt(a.cpu_s - b.cpu_s, 2)])
    result.text = (
        f"SNMP footprint: {CHECKS} TCP checks at 1 s on loopback, {len(walk_s)} snmpwalks "
        f"(v3 authPriv) of {rows} rows over {seconds:.0f} s, median "
        f"{statistics.median(walk_s) * 1000:.0f} ms each (net-snmp process start "
        f"included); snmptrapd got {received} checkUp informs\n"
        + table(["process", "RSS MiB", "RSS peak MiB", "anon+file MiB",
                 f"CPU s in {seconds:.0f} s"], lines))
    plain, with_snmp = after["probe without SNMP"], after["probe with SNMP agent"]
    result.goals.append(Goal(
        f"probe RSS <= {RSS_GOAL_MIB:.0f} MiB with the SNMP agent (peak)",
        f"{with_snmp.hwm_mib:.1f} MiB", f"{RSS_GOAL_MIB:.0f} MiB",
        f"{with_snmp.hwm_mib / RSS_GOAL_MIB:.2f}x", with_snmp.hwm_mib <= RSS_GOAL_MIB))
    result.goals.append(Goal(
        "RSS peak with SNMP vs the same probe without (no goal)",
        f"{with_snmp.hwm_mib:.1f} MiB", f"{plain.hwm_mib:.1f} MiB",
        f"{with_snmp.hwm_mib / plain.hwm_mib:.2f}x", None))
    return result
