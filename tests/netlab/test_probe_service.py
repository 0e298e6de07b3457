"""The probe as a service in the lab: confirmation rounds, the local context, its own
/metrics, and configuration reload on SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import require_program, wait_for
from tests.support.spine import PYTHON, Collector, Probe

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

RESPONDER = Path(__file__).resolve().parents[1] / "support" / "lab" / "icmp_responder.py"


def answer_pings_for(lab, address: str) -> None:
    """The lab's router ignores pings; this makes it answer for the mission's gateway."""
    process = lab.popen(lab.net, [PYTHON, str(RESPONDER), "--target", f"{address}=0"],
                        stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"


def gateway_of(mission) -> str:
    return mission.ipv4.rsplit(".", 1)[0] + ".1"


def test_confirmation_and_local_context(lab, tmp_path):
    mission = lab.add_mission("SEN")
    target = lab.add_target()
    lab.start_responders()
    gateway = gateway_of(mission)
    answer_pings_for(lab, gateway)
    collector = Collector(lab, tmp_path)
    collector.start()
    checks = [
        {"id": "internet-icmp", "kind": "icmp", "target": target.ipv4, "interval_s": 4,
         "timeout_s": 0.5, "count": 2, "packet_interval_s": 0.05, "confirm_count": 2,
         "confirm_interval_s": 1},
        {"id": "closed-port", "kind": "tcp", "target": target.ipv4, "port": 81,
         "interval_s": 5, "timeout_s": 0.5, "confirm_count": 0},
    ]
    probe = Probe(lab, mission, tmp_path, collector, checks, metrics="127.0.0.1:9641",
                  local={"gateway": gateway, "resolver": "none", "interval_s": 30})
    probe.start()
    wait_for(lambda: {r.check_id for r in collector.results(probe.probe_id)}
             >= {"internet-icmp", "closed-port"}, 20, "a first round of both checks")
    lab.cut(mission)
    cut_at = time.time()
    time.sleep(11)  # a scheduled round fails, then its two confirmation rounds
    lab.restore(mission)
    restored_at = time.time()
    wait_for(lambda: [r for r in collector.results(probe.probe_id)
                      if r.check_id == "internet-icmp" and r.ok and r.confirmation],
             30, "the recovery after the cut, confirmed")

    stored = collector.results(probe.probe_id)
    # A target failing while the gateway answers: the local side was fine.
    refused = [r for r in stored if r.check_id == "closed-port" and r.started_at < cut_at]
    assert refused and all(r.reason == "refused" and r.local_ok is True for r in refused)
    # During the cut the gateway was re-checked at once, and failed: a local fault.
    failed = [r for r in stored if r.check_id == "internet-icmp" and not r.ok]
    # (A round that ends just before the link returns has its gateway re-checked after.)
    inside = [r for r in failed if r.started_at + r.duration_s < restored_at - 2]
    assert inside and all(r.local_ok is False for r in inside)
    gateway_rounds = [r for r in stored if r.check_id == "local-gateway"]
    assert any(not r.ok and cut_at < r.started_at < restored_at for r in gateway_rounds)
    assert all(r.check_group == "local" for r in gateway_rounds)
    # The failure was confirmed twice, about a second apart, well before the next round
    # (the first after the round, its one-off gateway check and a second's pause).
    confirmations = sorted(r.started_at for r in failed if r.confirmation)
    first = min(r.started_at for r in failed if not r.confirmation)
    assert len(confirmations) == 2
    assert 1.5 < confirmations[0] - first < 4 and 1 < confirmations[1] - confirmations[0] < 2

    def scrape() -> tuple[str, dict]:
        status, _headers, body = lab.fetch(mission.name, "http://127.0.0.1:9641/metrics")
        assert status == 200
        text = body.decode()
        return text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}

    # The collector has the recovery; the probe's ack for it reaches its /metrics at the
    # next refresh of the outbox figures (every 2 s).
    def acked_after_restore() -> tuple[str, dict] | None:
        text, samples = scrape()
        acked = samples.get(("unhindered_probe_last_ack_timestamp_seconds", ()), 0)
        return (text, samples) if acked > restored_at else None

    text, samples = wait_for(acked_after_restore, 15,
                             "an acknowledgement after the link returned, in /metrics")
    assert samples[("unhindered_probe_icmp_socket_info", (("family", "ipv4"), ("mode", "raw")))]
    assert samples[("unhindered_probe_confirmation_rounds_total",
                    (("check", "internet-icmp"),))] >= 3
    assert ("unhindered_probe_outbox_depth_results", ()) in samples
    lint = subprocess.run([require_program("promtool", "prometheus"), "check", "metrics"],
                          input=text, capture_output=True, text=True)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    probe.stop()


def test_sighup_applies_a_good_config_and_refuses_a_bad_one(lab, tmp_path):
    mission = lab.add_mission("URY")
    target = lab.add_target()
    lab.start_responders()
    collector = Collector(lab, tmp_path)
    collector.start()
    first = {"id": "first", "kind": "tcp", "target": target.ipv4, "port": 80, "interval_s": 1}
    probe = Probe(lab, mission, tmp_path, collector, [first])
    probe.start()
    wait_for(lambda: collector.results(probe.probe_id), 20, "results of the first check")

    config = yaml.safe_load(probe.config_path.read_text())
    config["checks"].append({**first, "id": "second"})
    probe.config_path.write_text(yaml.safe_dump(config))
    probe.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any(r.check_id == "second" for r in collector.results(probe.probe_id)),
             20, "the added check's results")

    config["checks"][0]["interval_s"] = 0
    probe.config_path.write_text(yaml.safe_dump(config))
    probe.process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    reloaded_at = time.time()
    wait_for(lambda: {r.check_id for r in collector.results(probe.probe_id)
                      if r.started_at > reloaded_at + 1} == {"first", "second"}, 20,
             "both checks to go on after the refused reload")
    assert probe.process.poll() is None
    probe.stop()
    log = (tmp_path / f"{probe.probe_id}-1.log").read_text()
    assert "config reload refused" in log and "checks[0].interval_s" in log
