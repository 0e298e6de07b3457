"""SNMP poll sweep benchmark, the second half of `python -m bench snmp`: one sweep of 250
agents on loopback ports by the collector's poller, and by net-snmp's snmpbulkwalk
fetching the same columns, in the same run. See docs/benchmarks.md.

Two kinds of agent, each 250 on ports of 127.0.0.1:

probe agents
    The probe's own agent code (probes.snmp.service.SnmpService with its real MIB
    instrumentation, v3 authPriv SHA-256/AES-128) holding 10 checks, each instance
    listening on 50 ports (5 processes): 250 probe processes would need ~15 GiB. The
    collector walks the probe scalars and the 15 check columns of each (ProbePoller's
    walk, without storing); snmpbulkwalk walks unhCheckTable (the same 15 columns, as one
    subtree) and the 4 scalars with snmpget.
routers
    net-snmp snmpd (5 processes x 50 ports, v2c) standing in for mission routers: the
    collector walks the 7 IF-MIB columns it exports (RouterPoller's walk);
    snmpbulkwalk walks each of those columns (it takes one OID per run).

Ours: one process, one engine, every agent polled concurrently (at most CONCURRENCY in
flight). net-snmp: one snmpbulkwalk process per walk, PARALLEL at a time. Figures: wall
time of the sweep and CPU seconds of the poller (ours: the bench process's own CPU during
the sweep, which also runs nothing else; net-snmp: its children's CPU).
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import PYTHON, REPO, BenchError, Goal, PartResult, fmt, table

AGENTS = 250
PER_PROCESS = 50
CHECKS = 10
CONCURRENCY = 64
PARALLEL = 8
USER = {"name": "bench", "auth_key": "bench-auth-passphrase",
        "priv_key": "bench-priv-passphrase"}


@dataclass
class Sweep:
    tool: str
    wall_s: float
    cpu_s: float
    agents_ok: int
    values: int  # variables read in all


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_ports(count: int) -> list[int]:
    """`count` UDP ports free now on 127.0.0.1 (bound together, so all distinct)."""
    import socket
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- probe agents: the probe's agent code on many ports ---------------------------------


async def serve_probe_agents(ports: list[int], workdir: Path) -> None:
    """One probe SNMP service (its engine, MIB instrumentation and users) answering on
    every port, with CHECKS checks that have measured; runs until killed."""
    from datetime import UTC, datetime

    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config

    from probes.checkstate import CheckStates
    from probes.outbox import Outbox
    from probes.snmp.service import SnmpService
    from probes.snmp.values import ProbeFacts
    from unhindered.checks.tcp import TcpCheck
    from unhindered.measurement import TcpFigures, TcpMeasurement
    from unhindered.snmp.settings import AgentSettings, SnmpSettings
    from unhindered.snmp.udp import bind_socket

    checks = [TcpCheck(id=f"check-{i}", kind="tcp", target=f"198.51.100.{i}", port=443)
              for i in range(1, CHECKS + 1)]
    states = CheckStates()
    states.configure(checks)
    now = datetime.now(UTC)
    for seq, check in enumerate(checks, start=1):
        m = TcpMeasurement(probe_id="bench-1", mission="FRA", check_id=check.id,
                           target=check.target, started_at=now, duration_s=0.01, ok=True,
                           figures=TcpFigures(connect_s=0.012))
        states.measured(m, seq)
        states.confirmed(m, now)
    outbox = Outbox(workdir / f"outbox-{ports[0]}.sqlite")
    settings = SnmpSettings(agent=AgentSettings(listen=f"127.0.0.1:{ports[0]}"),
                            users=[USER])
    service = SnmpService(settings, states, ProbeFacts("bench-1", "FRA", outbox.outbox_id,
                                                      time.monotonic()), outbox)
    await service.start()
    for i, port in enumerate(ports[1:], start=2):
        sock = bind_socket("127.0.0.1", port, "SNMP agent")
        config.add_transport(service.engine, (*udp.DOMAIN_NAME, i),
                             udp.UdpAsyncioTransport().open_server_mode(sock=sock))
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- the sweeps ------------------------------------------------------------------------


async def _ours(peers, columns, scalars, label: str) -> Sweep:
    gate = asyncio.Semaphore(CONCURRENCY)
    results: list = []

    async def one(peer):
        async with gate:
            try:
                results.append(await peer.walk(columns, scalars))
            except Exception as exc:  # counted as a failed agent
                results.append(exc)

    cpu, started = _cpu_self(), time.perf_counter()
    await asyncio.gather(*(one(p) for p in peers))
    wall, cpu = time.perf_counter() - started, _cpu_self() - cpu
    ok = [r for r in results if not isinstance(r, Exception)]
    values = sum(len(r.scalars) + sum(len(row) for row in r.rows.values()) for r in ok)
    return Sweep(f"collector poller, {label}", wall, cpu, len(ok), values)


def _netsnmp(commands: list[list[str]], agents: int) -> Sweep:
    cpu, started = _cpu_children(), time.perf_counter()
    values, failed_agents = 0, set()
    running: list[tuple[subprocess.Popen, int]] = []
    pending = list(commands)
    # commands[i] belongs to agent i * agents // len(commands)
    index = {id(c): i * agents // len(commands) for i, c in enumerate(commands)}
    while pending or running:
        while pending and len(running) < PARALLEL:
            command = pending.pop(0)
            running.append((subprocess.Popen(command, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL), index[id(command)]))
        process, agent = running.pop(0)
        out, _err = process.communicate(timeout=60)
        if process.returncode != 0:
            failed_agents.add(agent)
        # snmpbulkwalk also prints the endOfMibView markers past the last object.
        values += sum(1 for line in out.splitlines()
                      if b" = " in line and b"No more variables" not in line)
    wall, cpu = time.perf_counter() - started, _cpu_children() - cpu
    return Sweep(f"net-snmp snmpbulkwalk ({PARALLEL} at a time)", wall, cpu,
                 agents - len(failed_agents), values)


def _v3_args() -> list[str]:
    from tests.support.snmp import v3
    return v3(USER["name"], USER["auth_key"], USER["priv_key"])


def _compare(name: str, first: Sweep, ours: Sweep, theirs: Sweep) -> tuple[str, list[Goal]]:
    rows = [[s.tool, fmt(s.wall_s), fmt(s.cpu_s), f"{s.agents_ok}/{AGENTS}", str(s.values)]
            for s in (first, ours, theirs)]
    text = f"{name}\n" + table(["sweep", "wall s", "CPU s", "agents read", "values"], rows)
    complete = first.agents_ok == ours.agents_ok == AGENTS and ours.values == theirs.values
    goals = [
        Goal(f"{name}: sweep wall time", f"{ours.wall_s:.2f} s", f"{theirs.wall_s:.2f} s",
             f"{theirs.wall_s / ours.wall_s:.1f}x faster" if ours.wall_s else "n/a",
             complete and ours.wall_s <= theirs.wall_s),
        Goal(f"{name}: sweep CPU", f"{ours.cpu_s:.2f} s", f"{theirs.cpu_s:.2f} s",
             f"{theirs.cpu_s / ours.cpu_s:.1f}x less" if ours.cpu_s else "n/a",
             complete and ours.cpu_s <= theirs.cpu_s),
    ]
    return text, goals


def _start(argv: list[str], log: Path, env: dict | None = None, ready: bytes | None = None
           ) -> subprocess.Popen:
    with log.open("wb") as errors:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=env,
                                   start_new_session=True)
    if ready is not None:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if ready not in line:
            process.kill()
            raise BenchError(f"{argv[:4]} did not start: {log.read_text()[-2000:]}")
    return process


def run() -> PartResult:
    from collector.snmp import mib
    from collector.snmp.poller import PROBE_SCALARS
    from collector.snmp.router import COLUMNS as ROUTER_COLUMNS
    from collector.snmp.settings import Agent
    from collector.snmp.walk import Peer
    from tests.support.netsnmp import ROUTER_COMMUNITY, snmpd_argv, snmpd_env
    from unhindered.snmp.values import CHECK_COLUMNS

    for program in ("snmpd", "snmpbulkwalk", "snmpget"):
        if subprocess.run(["which", program], capture_output=True).returncode != 0:
            raise BenchError(f"{program} is missing: apt-get install snmp snmpd")
    result = PartResult("snmp")
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="uh-bench-snmp-sweep-") as tmp:
        workdir = Path(tmp)
        try:
            ports = free_ports(2 * AGENTS)
            probe_ports, router_ports = ports[:AGENTS], ports[AGENTS:]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            for i in range(0, AGENTS, PER_PROCESS):
                these = ",".join(map(str, probe_ports[i:i + PER_PROCESS]))
                processes.append(_start([PYTHON, "-m", "bench.bench_snmp_sweep", "agents",
                                         these, str(workdir)], workdir / f"agents-{i}.log",
                                        env=env, ready=b"ready"))
                snmpd_dir = workdir / f"snmpd-{i}"
                snmpd_dir.mkdir()
                listen = [f"udp:127.0.0.1:{p}" for p in router_ports[i:i + PER_PROCESS]]
                processes.append(_start(snmpd_argv(snmpd_dir, listen), snmpd_dir / "stderr.log",
                                        env=snmpd_env(snmpd_dir)))
            time.sleep(2)  # snmpd has no ready line: give it its start-up

            columns = [mib.oid(c) for c in CHECK_COLUMNS]
            scalars = [(*mib.oid(s), 0) for s in PROBE_SCALARS]

            async def sweeps():
                from pysnmp.entity.engine import SnmpEngine
                engine = SnmpEngine()  # one engine for every agent, as in the collector
                probe_peers = [Peer(engine, Agent(mission="FRA", address="127.0.0.1", port=p,
                                                  user=USER, timeout_s=5, retries=1))
                               for p in probe_ports]
                router_peers = [Peer(engine, Agent(mission="FRA", address="127.0.0.1", port=p,
                                                   community=ROUTER_COMMUNITY, timeout_s=5,
                                                   retries=1))
                                for p in router_ports]
                # The first sweep discovers each v3 engine and the table sizes; the
                # collector's later sweeps, every interval, are like the second.
                return [await _ours(peers, cols, scal, label)
                        for peers, cols, scal in ((probe_peers, columns, scalars),
                                                  (router_peers, ROUTER_COLUMNS, []))
                        for label in ("first sweep", "next sweeps")]

            probes_first, probes_next, routers_first, routers_next = asyncio.run(sweeps())
            dotted = ".".join
            table_oid = dotted(map(str, mib.oid("unhCheckTable")))
            probe_commands = []
            for p in probe_ports:
                probe_commands.append(["snmpbulkwalk", *_v3_args(), "-Cr24", "-On",
                                       f"127.0.0.1:{p}", table_oid])
                probe_commands.append(["snmpget", *_v3_args(), "-On", f"127.0.0.1:{p}",
                                       *(dotted(map(str, s)) for s in scalars)])
            theirs_probes = _netsnmp(probe_commands, AGENTS)
            router_commands = [["snmpbulkwalk", "-v2c", "-c", ROUTER_COMMUNITY, "-Cr24", "-On",
                                f"127.0.0.1:{p}", dotted(map(str, c))]
                               for p in router_ports for c in ROUTER_COLUMNS]
            theirs_routers = _netsnmp(router_commands, AGENTS)
        finally:
            for process in processes:
                process.kill()
                process.wait(10)
    for name, first, ours, theirs in (
            ("250 probe agents, v3 authPriv", probes_first, probes_next, theirs_probes),
            ("250 snmpd routers, v2c IF-MIB", routers_first, routers_next, theirs_routers)):
        text, goals = _compare(name, first, ours, theirs)
        result.text += text + "\n\n"
        result.goals += goals
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["agents"]:
        asyncio.run(serve_probe_agents([int(p) for p in sys.argv[2].split(",")],
                                       Path(sys.argv[3])))
