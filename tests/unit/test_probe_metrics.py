"""The probe's own /metrics: the outbox's figures, including what it had to drop."""

import shutil
import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from probes.outbox import OutboxStats
from probes.selfmetrics import ProbeMetrics


def test_the_outbox_figures_say_what_was_dropped_and_whether_the_disk_is_full():
    metrics = ProbeMetrics(SimpleNamespace(failures=0))
    metrics.snapshot.outbox = OutboxStats(
        depth=12, oldest_queued_at=None, last_seq=40, acked_through=20, last_ack_at=None,
        dropped=8, size_bytes=4096 * 50, limit_bytes=4096 * 60, disk_full=True)
    text = generate_latest(metrics.registry).decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text)
               for s in f.samples}
    assert samples["unhindered_probe_outbox_dropped_results_total"] == 8
    assert samples["unhindered_probe_outbox_size_bytes"] == 4096 * 50
    assert samples["unhindered_probe_outbox_limit_bytes"] == 4096 * 60
    assert samples["unhindered_probe_outbox_disk_full"] == 1
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
