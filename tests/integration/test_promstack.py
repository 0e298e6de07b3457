"""The Prometheus/Alertmanager harness itself (tests/support/promstack.py): real programs start,
scrape, evaluate, deliver alerts, and leave nothing behind."""

from __future__ import annotations

import pytest

from tests.support import require_program, wait_for
from tests.support.promstack import ALERTMANAGER, PROMETHEUS, alertmanager, prometheus

pytestmark = pytest.mark.timeout(180)

AM_CONFIG = """\
route:
  receiver: sink
  group_wait: 0s
receivers:
  - name: sink
"""


def test_prometheus_scrapes_evaluates_and_delivers_to_alertmanager(tmp_path):
    require_program(PROMETHEUS, "prometheus")
    require_program(ALERTMANAGER, "prometheus-alertmanager")
    rules = tmp_path / "rules.yml"
    rules.write_text("""\
groups:
  - name: harness
    rules:
      - alert: HarnessAlways
        expr: vector(1)
        labels: {mission: TST}
""")
    with alertmanager(AM_CONFIG) as am:
        # Alertmanager serves /metrics: a target Prometheus can scrape.
        with prometheus([f"127.0.0.1:{am.port}"], rule_files=[rules],
                        alertmanager_url=am.url) as prom:
            prom.wait_for_targets_up()
            assert prom.query('up{job="unhindered"}')[0]["value"][1] == "1"
            prom_dir, prom_proc = prom.workdir, prom.process
            assert prom.query("vector(3)")[0]["value"][1] == "3"
            wait_for(lambda: any(a["labels"]["alertname"] == "HarnessAlways"
                                 for a in prom.alerts()), 30, "the rule to fire")
            got = wait_for(lambda: am.alerts('alertname="HarnessAlways"'), 30,
                           "Alertmanager to receive the alert")
            assert got[0]["labels"]["mission"] == "TST"
        am_dir, am_proc = am.workdir, am.process
    assert prom_proc.poll() is not None and am_proc.poll() is not None
    assert not prom_dir.exists() and not am_dir.exists()
