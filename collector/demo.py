"""The demo: a collector on SQLite and three probes, all on loopback, measuring local
responders that the demo starts itself, the probes pushing over HTTPS to the collector,
whose certificate a throwaway CA in the working directory signs. Nothing here contacts any
other address."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from collector.store.database import Store
from collector.tls_certs import make_authority

# Missions and what each one's probe measures. The closed port shows a refused check.
MISSIONS = {"FRA": "127.0.0.11", "KEN": "127.0.0.12", "BRA": "127.0.0.13"}


def _icmp_allowed() -> bool:
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except PermissionError:
            continue
    return False


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def _responder(host: str) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(answer, host, 0)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    with log_path.open("w") as log_file:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)


def _tls(directory: Path) -> Path:
    """The collector's config: its certificate, from a CA made for the demo (once: a
    directory used again keeps them). The CA's key stays beside it, for nothing else."""
    if not (directory / "collector.pem").exists():
        ca = make_authority(directory, "Unhindered demo CA")
        ca.issue(directory, "collector", ["127.0.0.1", "localhost"])
    path = directory / "collector.yaml"
    path.write_text(yaml.safe_dump({"tls": {"cert_file": "collector.pem",
                                            "key_file": "collector.key"}}))
    return path


def _probe_config(directory: Path, mission: str, host: str, port: int, collector: str,
                  icmp: bool) -> Path:
    probe_id = f"{mission.lower()}-demo"
    checks: list[dict] = [
        {"id": "internet-tcp", "kind": "tcp", "target": host, "port": port, "interval_s": 5},
        {"id": "documents-tcp", "kind": "tcp", "group": "documents", "target": host,
         "port": _free_port(host), "interval_s": 5},  # nothing listens: refused
    ]
    if icmp:
        checks.append({"id": "internet-icmp", "kind": "icmp", "target": host, "interval_s": 5,
                       "count": 5, "packet_interval_s": 0.2})
    config = {
        "probe_id": probe_id,
        "mission": mission,
        "outbox": f"{probe_id}-outbox.sqlite",
        "collector": {"urls": [collector], "token_file": f"{probe_id}.token",
                      "ca_file": "ca.pem", "batch_max_age_s": 2},
        "checks": checks,
        # The demo's probes run on this machine: their gateway and resolver are real
        # ones, which the demo must never contact.
        "local": {"gateway": "none", "resolver": "none"},
    }
    path = directory / f"{probe_id}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _summary(metrics_url: str, ca_file: Path) -> str:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5,
                                    context=ssl.create_default_context(cafile=ca_file)
                                    ) as response:
            text = response.read().decode()
    except OSError as exc:
        return f"  (collector not answering: {exc})"
    states: dict[tuple[str, str], str] = {}
    figures: dict[tuple[str, str], str] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.labels.get("mission", ""), sample.labels.get("check", ""))
            if sample.name == "unhindered_check_state" and sample.value == 1:
                states[key] = sample.labels["state"]
            elif sample.name == "unhindered_check_rtt_median_seconds":
                figures[key] = f"rtt median {sample.value * 1000:.3f} ms"
            elif sample.name == "unhindered_check_failure_reason" and sample.value == 1:
                figures[key] = sample.labels["reason"]
            elif sample.name == "unhindered_check_connect_seconds":
                figures[key] = f"connect {sample.value * 1000:.3f} ms"
    lines = [f"  {m:<4} {c:<15} {s:<8} {figures.get((m, c), '')}"
             for (m, c), s in sorted(states.items())]
    return "\n".join(lines) or "  (no results yet)"


def run_demo(directory: Path | None, port: int, seconds: float) -> int:
    return asyncio.run(_demo(directory, port, seconds))


async def _demo(directory: Path | None, port: int, seconds: float) -> int:
    workdir = directory or Path(tempfile.mkdtemp(prefix="unhindered-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'collector.sqlite'}"
    store = Store(database)
    store.migrate()
    icmp = _icmp_allowed()
    base_url = f"https://127.0.0.1:{port}"
    collector_config = _tls(workdir)
    servers = [await _responder(host) for host in MISSIONS.values()]
    processes: list[subprocess.Popen] = []
    python = sys.executable
    try:
        processes.append(_spawn(
            [python, "-m", "collector.cli", "-c", str(collector_config), "--database",
             database, "serve",
             "--listen", f"127.0.0.1:{port}"], workdir / "collector.log"))
        registered = {p.probe_id for p in store.list_probes()}
        for (mission, host), server in zip(MISSIONS.items(), servers, strict=True):
            probe_id = f"{mission.lower()}-demo"
            if probe_id not in registered:
                token = store.add_probe(probe_id, mission)
                token_file = workdir / f"{probe_id}.token"
                token_file.write_text(token + "\n")
                token_file.chmod(0o600)  # the probe refuses a credential others may read
            config = _probe_config(workdir, mission, host, server.sockets[0].getsockname()[1],
                                   base_url, icmp)
            processes.append(_spawn([python, "-m", "probes", "run", "-c", str(config)],
                                    workdir / f"{probe_id}.log"))
        store.close()
        print(f"Unhindered demo: collector and {len(MISSIONS)} probes on loopback over HTTPS, "
              f"files in {workdir}")
        print(f"  CA:       {workdir / 'ca.pem'} (e.g. curl --cacert {workdir / 'ca.pem'})")
        print(f"  status:   {base_url}/status")
        print(f"  metrics:  {base_url}/metrics")
        print(f"  health:   {base_url}/healthz")
        if not icmp:
            print("  (ICMP checks left out: run as root, or widen net.ipv4.ping_group_range)")
        print("Press Ctrl-C to stop." if not seconds else f"Stopping after {seconds:.0f} s.",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)
            for p in processes:
                if p.poll() is not None:
                    print(f"a demo process exited ({p.args}); see the logs in {workdir}",
                          file=sys.stderr)
                    return 1
            summary = await loop.run_in_executor(None, _summary, f"{base_url}/metrics",
                                                 workdir / "ca.pem")
            print(f"after {time.monotonic() - started:.0f} s:\n{summary}", flush=True)
            if seconds and time.monotonic() - started >= seconds:
                break
        return 0
    finally:
        for p in processes:
            p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for server in servers:
            server.close()
