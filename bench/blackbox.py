"""prometheus-blackbox-exporter as a reference, run inside a lab mission namespace."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import BenchError, exec_pid

PROGRAM = "prometheus-blackbox-exporter"
LISTEN = "127.0.0.1:9115"  # the mission namespace's own loopback: unreachable from elsewhere
# One echo request per /probe; IPv4 only, so that it never tries another family.
CONFIG = """\
modules:
  icmp:
    prober: icmp
    timeout: 2s
    icmp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""
RTT = re.compile(r'^probe_icmp_duration_seconds\{phase="rtt"\} (\S+)$', re.MULTILINE)
SUCCESS = re.compile(r"^probe_success (\S+)$", re.MULTILINE)


class Blackbox:
    def __init__(self, lab: Any, mission: Any, workdir: Path, listen: str = LISTEN) -> None:
        """`listen`: where it serves; another address than loopback's when Prometheus
        elsewhere scrapes it (bench/bench_alerts.py)."""
        self.lab = lab
        self.mission = mission
        self.listen = listen
        config = workdir / "blackbox.yml"
        config.write_text(CONFIG)
        log = (workdir / f"blackbox-{mission.name}.log").open("w")
        self.process = lab.popen(
            mission.name,
            [PROGRAM, f"--config.file={config}", f"--web.listen-address={listen}"],
            stdout=log, stderr=subprocess.STDOUT)
        self.pid = exec_pid(self.process, PROGRAM)
        deadline = time.monotonic() + 15
        while True:
            try:
                if lab.fetch(mission.name, f"http://{listen}/-/healthy", timeout=2)[0] == 200:
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise BenchError(f"{PROGRAM} did not start; see {log.name}")
            time.sleep(0.1)

    def probe(self, address: str) -> float | None:
        """One /probe request: the RTT in seconds, or None when the probe failed."""
        status, _headers, body = self.lab.fetch(
            self.mission.name, f"http://{self.listen}/probe?module=icmp&target={address}",
            timeout=5)
        text = body.decode()
        success = SUCCESS.search(text)
        if status != 200 or success is None:
            raise BenchError(f"{PROGRAM} answered {status}: {text[:500]}")
        rtt = RTT.search(text)
        if float(success.group(1)) != 1 or rtt is None:
            return None
        return float(rtt.group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
