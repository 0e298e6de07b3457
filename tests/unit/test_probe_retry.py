"""While a check fails, its rounds come every retry_interval_s instead of its interval,
so that the collector can place the outage's end (docs/states.md, "When an outage starts
and ends"); they stop with the first success. Loopback only: a closed port, then open."""

from __future__ import annotations

import asyncio
import socket

from probes import config as probe_config
from probes.app import Probe

CONFIG = """\
probe_id: fra-1
mission: FRA
outbox: outbox.sqlite
collector: {{urls: ["http://127.0.0.1:9640/"], token_file: probe.token}}
central: {{enabled: false}}
local: {{gateway: none, resolver: none}}
checks:
  - {{id: documents-tcp, kind: tcp, group: documents, target: 127.0.0.1, port: {port},
     interval_s: 60, timeout_s: 0.5, confirm_count: 0, retry_interval_s: {retry}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rounds(probe: Probe, outcome: str) -> float:
    return probe.metrics.registry.get_sample_value(
        "unhindered_probe_rounds_total", {"check": "documents-tcp", "outcome": outcome}) or 0


def probe_for(tmp_path, port: int, retry: float) -> Probe:
    path = tmp_path / "probe.yaml"
    path.write_text(CONFIG.format(port=port, retry=retry))
    (tmp_path / "probe.token").write_text("uh1.test\n")
    (tmp_path / "probe.token").chmod(0o600)
    return Probe(probe_config.load(path), path)


async def test_a_failing_check_is_retried_densely_until_it_succeeds(tmp_path):
    port = free_port()
    probe = probe_for(tmp_path, port, 0.3)
    [check] = probe.config.checks
    server = None
    try:
        task = asyncio.create_task(probe.run_round(check))
        await asyncio.sleep(1.0)
        # Refused at once, then again every 0.3 s (not every 60 s).
        assert 3 <= rounds(probe, "failed") <= 5
        assert not task.done()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        await asyncio.wait_for(task, 2.0)  # the first success ends the dense rounds
        assert rounds(probe, "ok") == 1
    finally:
        if server is not None:
            server.close()
        probe.outbox.close()


async def test_retries_off_leave_the_interval(tmp_path):
    probe = probe_for(tmp_path, free_port(), 0)
    [check] = probe.config.checks
    try:
        await asyncio.wait_for(probe.run_round(check), 2.0)
        assert rounds(probe, "failed") == 1
    finally:
        probe.outbox.close()
