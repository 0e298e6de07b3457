"""deploy/prometheus/ and deploy/alertmanager/ work as shipped: the real Prometheus loads
the shipped config and every rule group, and the shipped update script writes an
Alertmanager config that amtool accepts and the real Alertmanager runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port, require_program
from tests.support.promstack import (
    ALERTMANAGER,
    HOST,
    PROMETHEUS,
    Prometheus,
    alertmanager,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def test_shipped_prometheus_config_loads_every_rule_group(tmp_path):
    promtool = require_program("promtool", "prometheus")
    config = REPO / "deploy" / "prometheus" / "prometheus.yml"
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    require_program(PROMETHEUS, "prometheus")
    prom = Prometheus(HOST, tmp_path, free_port())
    try:
        prom.start([PROMETHEUS, f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prom.port}"])
        groups = {g["name"] for g in prom.rule_groups()}
    finally:
        prom.stop()
    assert {"unhindered-access", "unhindered-collector", "unhindered-slo"} <= groups


def test_update_script_writes_a_config_alertmanager_runs(tmp_path):
    require_program("amtool", "prometheus-alertmanager")
    require_program(ALERTMANAGER, "prometheus-alertmanager")
    collector_config = tmp_path / "collector.yaml"
    collector_config.write_text("alerting:\n  centre_contacts: [noc@centre.example.org]\n")
    out = tmp_path / "etc-alertmanager"
    env = {**os.environ, "UNHINDERED_CONFIG": str(collector_config),
           "ALERTMANAGER_DIR": str(out), "NO_RELOAD": "1",
           "UNHINDERED_COLLECTOR": str(Path(sys.executable).with_name("unhindered-collector"))}
    done = subprocess.run([str(REPO / "deploy" / "alertmanager" / "update-config.sh")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    config = (out / "alertmanager.yml").read_text()
    assert str(out / "unhindered-email.tmpl") in config  # the template where it now lives
    with alertmanager(config) as am:
        receivers = {r["name"] for r in am.request("/api/v2/receivers")}
    assert {"centre", "watchdog", "mission-FRA", "mission-GBR"} <= receivers
