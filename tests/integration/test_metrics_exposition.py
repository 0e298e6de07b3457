"""/metrics of a collector holding real results passes promtool's lint."""

import asyncio
import subprocess

from aiohttp.test_utils import TestClient, TestServer

from collector.config import CollectorConfig, RetentionSettings
from collector.store.database import Store
from collector.web.app import create_app
from tests.support import require_program, scrape_until
from tests.support.storage import registered_since
from tests.unit.test_measurement import batch, icmp


async def test_promtool_check_metrics_passes(tmp_path):
    promtool = require_program("promtool", "prometheus")
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    registered_since(store, 0)  # the results are dated 2026-01-15: kept, and after it
    failed = icmp(seq=2, ok=False, reason="timeout",
                  figures={"sent": 5, "received": 0, "loss_ratio": 1.0})
    tcp = {**icmp(seq=3, check_id="web"), "kind": "tcp", "figures": {"connect_s": 0.01}}
    config = CollectorConfig(retention=RetentionSettings(raw_days=3650))
    async with TestClient(TestServer(create_app(config, store))) as client:
        body = {**batch(1), "measurements": [icmp(seq=1, check_id="other"), failed, tcp]}
        response = await client.post("/api/v1/results", json=body,
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, await response.text()
        text = await scrape_until(
            client, 'unhindered_check_connect_seconds{check="web",mission="FRA"} 0.01')
    # A lost round exports no RTT at all, rather than a zero.
    assert 'unhindered_check_rtt_median_seconds{check="internet-icmp"' not in text
    assert 'unhindered_check_rtt_median_seconds{check="other",mission="FRA"} 0.021' in text
    assert 'unhindered_check_failure_reason{check="internet-icmp",mission="FRA",' \
           'reason="timeout"} 1.0' in text
    assert 'unhindered_check_connect_seconds{check="web",mission="FRA"} 0.01' in text
    # Every reason a result can be rejected for is a series from the start.
    assert 'unhindered_ingest_rejected_results_total{reason="store_refused"} 0.0' in text
    lint = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text,
                                   capture_output=True, text=True)
    # promtool prints its findings and may still exit 0: any output is a failure.
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    store.close()
