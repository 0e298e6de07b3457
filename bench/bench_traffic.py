"""Part traffic: the probe's own traffic on the wire, in bytes an hour, with 10 checks at the
default schedule.

The real service (`python -m probes run`) runs alone in a lab mission namespace with 10
icmp checks at their defaults (a round of 5 echo requests every 30 s) and reports to the
real collector in the lab's centre with the default batching and heartbeat. An nft table
of its own in the mission namespace counts every packet on the mission's veth by where it
goes or comes from: the targets (198.19.0.0/24: measurement traffic, the checks' own
packets) or the collector (reporting traffic: batches, heartbeats, their TCP and TLS),
and the veth's own counters (`ip -s link`) give the total, so that nothing goes uncounted.
The window is a whole number of check intervals after a warm-up, and is scaled to one
hour. Over TLS with a throwaway CA (`collector_tls`) where the collector and the probe
have the settings for it, else over plain HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_footprint import outbox_last_seq, wait_for_log
from bench.common import PYTHON, BenchError, Goal, PartResult, icmp_check, table, write_probe_config
from tests.support.lab.netns import Lab
from tests.support.spine import COLLECTOR_PORT, Collector
from unhindered.checks.base import CheckBase

CHECKS = 10
INTERVAL_S = CheckBase.model_fields["interval_s"].default  # the shipped default
WARMUP_S = 12.0  # start-up, and the first rounds' random offsets (up to 10 s)
GOAL_BYTES_PER_HOUR = 1_000_000  # reporting traffic, 10 checks
ETHERNET_HEADER = 14  # nft counts IP packets; the veth's counters count Ethernet frames
TABLE = "uh_traffic"
KINDS = ("measurement", "reporting", "other")
WINDOW_S = 12 * INTERVAL_S  # 12 rounds of each check, with their batches and heartbeats


# --- TLS: the one place that decides how the probe reaches the collector -----------------

def collector_tls(lab: Lab, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The collector's `tls` section and the probe's `collector` TLS settings, with a
    throwaway CA whose certificate names the centre's address; None (plain HTTP) while
    either program lacks those settings."""
    from collector.config import CollectorConfig
    from probes.config import CollectorSettings

    if "tls" not in CollectorConfig.model_fields or \
            "ca_file" not in CollectorSettings.model_fields:
        return None
    from tests.support.lab.certs import make_certs

    certs = make_certs(workdir / "tls", [lab.centre.ipv4])
    os.chmod(certs.valid.key_file, 0o600)
    return ({"tls": {"cert_file": str(certs.valid.cert_file),
                     "key_file": str(certs.valid.key_file)}},
            {"ca_file": str(certs.ca_file)})


# --- counting ------------------------------------------------------------------------------

@dataclass
class Count:
    packets: int = 0
    ip_bytes: int = 0  # as nft counts them: IP header and payload

    @property
    def wire_bytes(self) -> int:
        return self.ip_bytes + ETHERNET_HEADER * self.packets

    def __add__(self, other: Count) -> Count:
        return Count(self.packets + other.packets, self.ip_bytes + other.ip_bytes)

    def __sub__(self, other: Count) -> Count:
        return Count(self.packets - other.packets, self.ip_bytes - other.ip_bytes)


def nft_table(iface: str, collector_ip: str) -> str:
    rules = {"out": ("output", "oifname", "daddr"), "in": ("input", "iifname", "saddr")}
    chains = ""
    for direction, (hook, if_key, addr_key) in rules.items():
        # The probe's connections to the collector: how often it pays a TCP (and TLS)
        # handshake.
        syn = (f'    oifname "{iface}" ip daddr {collector_ip} tcp flags & (syn | ack) == syn '
               f"counter name connections\n" if direction == "out" else "")
        chains += (
            f"  chain count_{direction} {{\n"
            f"    type filter hook {hook} priority 0; policy accept;\n"
            + syn +
            f'    {if_key} "{iface}" ip {addr_key} 198.19.0.0/24 counter name '
            f"measurement_{direction} accept\n"
            f'    {if_key} "{iface}" ip {addr_key} {collector_ip} counter name '
            f"reporting_{direction} accept\n"
            f'    {if_key} "{iface}" counter name other_{direction}\n'
            f"  }}\n")
    counters = "".join(f"  counter {kind}_{d} {{ }}\n" for kind in KINDS for d in ("out", "in"))
    counters += "  counter connections { }\n"
    return f"table inet {TABLE} {{\n{counters}{chains}}}\n"


def read_counters(lab: Lab, namespace: str) -> dict[str, Count]:
    done = lab.run(namespace, ["nft", "-j", "list", "counters", "table", "inet", TABLE])
    if done.returncode != 0:
        raise BenchError(f"nft list counters: {done.stderr.strip()}")
    out: dict[str, Count] = {}
    for item in json.loads(done.stdout)["nftables"]:
        counter = item.get("counter")
        if counter is not None:
            out[counter["name"]] = Count(counter["packets"], counter["bytes"])
    return out


def read_link(lab: Lab, namespace: str, iface: str) -> dict[str, Count]:
    """The veth's own counters (Ethernet frames), as total_out and total_in."""
    done = lab.run(namespace, ["ip", "-j", "-s", "link", "show", "dev", iface])
    if done.returncode != 0:
        raise BenchError(f"ip -s link: {done.stderr.strip()}")
    stats = json.loads(done.stdout)[0]["stats64"]
    return {f"total_{d}": Count(stats[key]["packets"],
                                stats[key]["bytes"] - ETHERNET_HEADER * stats[key]["packets"])
            for d, key in (("out", "tx"), ("in", "rx"))}


# --- the run -------------------------------------------------------------------------------

def start_collector(lab: Lab, collector: Collector, scheme: str) -> None:
    """Like Collector.start, but ready when it says it listens: its health check over
    HTTPS would need the lab's CA."""
    log_path = collector.workdir / "collector-traffic.log"
    with log_path.open("w") as log:
        collector.process = lab.popen(
            lab.centre.name,
            collector._cli("serve", "--listen", f"{lab.centre.ipv4}:{COLLECTOR_PORT}"),
            stdout=log, stderr=subprocess.STDOUT)
    wait_for_log(log_path, "listening on", collector.process, 30)
    collector.url = f"{scheme}://{lab.centre.ipv4}:{COLLECTOR_PORT}"


def run(window_s: float = WINDOW_S) -> PartResult:
    result = PartResult("traffic")
    # A whole number of intervals: every check runs the same number of rounds in it.
    window_s = max(1, round(window_s / INTERVAL_S)) * INTERVAL_S
    workdir = Path(tempfile.mkdtemp(prefix="uh-bench-traffic-"))
    lab = Lab()
    try:
        mission = lab.add_mission("FRA")
        for _ in range(CHECKS):
            lab.add_target(delay_s=0.0)
        lab.start_responders(tcp_ports=())
        tls = collector_tls(lab, workdir)
        collector = Collector(lab, workdir, config=tls[0] if tls else None)
        start_collector(lab, collector, "https" if tls else "http")
        try:
            counts, results = _measure(lab, mission, collector, workdir,
                                       tls[1] if tls else {}, window_s)
        finally:
            collector.stop()
    finally:
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)

    scale = 3600 / window_s
    rows = []
    for kind in (*KINDS, "total"):
        c_out, c_in = counts[f"{kind}_out"], counts[f"{kind}_in"]
        both = c_out + c_in
        rows.append([kind, f"{both.packets * scale:,.0f}", f"{c_out.wire_bytes * scale:,.0f}",
                     f"{c_in.wire_bytes * scale:,.0f}",
                     f"{both.wire_bytes * scale / 1e6:.3f}",
                     f"{both.wire_bytes / results:,.0f}" if results else "n/a"])
    reporting = counts["reporting_out"].wire_bytes + counts["reporting_in"].wire_bytes
    per_hour = reporting * scale
    transport = "HTTPS (TLS, collector.ca_file)" if tls else "plain HTTP"
    result.text = (
        f"The probe's own traffic: {CHECKS} icmp checks at the defaults (5 echo requests "
        f"every {INTERVAL_S:.0f} s), reporting over {transport} with the default batching;\n"
        f"{window_s:.0f} s window after a {WARMUP_S:.0f} s warm-up, {results} results, "
        f"scaled to one hour. Bytes on the wire: IP packets plus their {ETHERNET_HEADER}-byte "
        f"Ethernet header.\n"
        + table(["traffic", "packets/h", "bytes/h out", "bytes/h in", "MB/h",
                 "bytes a result"], rows)
        + f"\nTCP connections to the collector: "
          f"{counts['connections'].packets * scale:,.0f} an hour")
    result.goals.append(Goal(
        f"reporting traffic <= 1 MB/h with {CHECKS} checks ({'TLS' if tls else 'HTTP'})",
        f"{per_hour / 1e6:.3f} MB/h", f"{GOAL_BYTES_PER_HOUR / 1e6:.0f} MB/h",
        f"{per_hour / GOAL_BYTES_PER_HOUR:.2f}x", per_hour <= GOAL_BYTES_PER_HOUR))
    measured = (counts["measurement_out"].wire_bytes + counts["measurement_in"].wire_bytes)
    result.goals.append(Goal(
        f"measurement traffic with {CHECKS} checks (no goal)",
        f"{measured * scale / 1e6:.3f} MB/h", "-", "-", None))
    return result


def _measure(lab: Lab, mission: Any, collector: Collector, workdir: Path,
             tls: dict[str, Any], window_s: float) -> tuple[dict[str, Count], int]:
    probe_id = "fra-traffic"
    token_file = collector.register(mission.code, probe_id)
    checks = [icmp_check(f"t{t.index}", t.ipv4) for t in lab.targets]  # every default
    config = write_probe_config(
        workdir / f"{probe_id}.yaml", mission.code, checks, probe_id=probe_id,
        collector={"urls": [collector.url], "token_file": str(token_file), **tls})
    done = lab.run(mission.name, ["nft", "-f", "-"],
                   input=nft_table(mission.iface, lab.centre.ipv4))
    if done.returncode != 0:
        raise BenchError(f"nft: {done.stderr.strip()}")
    log = workdir / f"{probe_id}.log"
    with log.open("w") as out:
        proc = lab.popen(mission.name, [PYTHON, "-m", "probes", "run", "-c", str(config)],
                         stdout=out, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        wait_for_log(log, " started: ", proc, 30)
        time.sleep(max(0.0, started + WARMUP_S - time.monotonic()))
        outbox = config.with_suffix(".outbox.sqlite")
        first_seq = outbox_last_seq(outbox)
        start = read_counters(lab, mission.name) | read_link(lab, mission.name, mission.iface)
        time.sleep(window_s)
        end = read_counters(lab, mission.name) | read_link(lab, mission.name, mission.iface)
        results = outbox_last_seq(outbox) - first_seq
        if proc.poll() is not None:
            raise BenchError(f"the probe stopped: {log.read_text()[-2000:]}")
    finally:
        proc.terminate()
        proc.wait(15)
    counts = {name: end[name] - start.get(name, Count()) for name in end}
    for direction in ("out", "in"):
        # What nft does not see (ARP) is in the veth's own counters: "other" gets it.
        counted = sum((counts[f"{kind}_{direction}"] for kind in KINDS), Count())
        counts[f"other_{direction}"] += counts[f"total_{direction}"] - counted
    if collector.process is None or collector.process.poll() is not None:
        raise BenchError("the collector stopped during the window")
    return counts, results
