"""The alert rules in alerts/ through the real promtool: they load, their unit tests pass,
and every alert is tested both firing and staying quiet, and documented in the runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import require_program

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"


def _alert_rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = require_program("promtool", "prometheus")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def test_rule_files_are_valid():
    assert RULE_FILES
    done = _promtool("check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    done = _promtool("test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_quiet():
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fired == set(), "alerts never shown to fire"
    # The Watchdog is the one alert that must always fire.
    assert names - quiet == {"Watchdog"}, "alerts never shown to stay quiet on a blip"


def test_every_alert_has_the_routing_labels_and_a_runbook_section():
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}
    for rule in _alert_rules():
        labels, notes = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in ("critical", "warning", "none"), rule["alert"]
        assert labels.get("scope") in ("mission", "fleet", "collector"), rule["alert"]
        # Mission alerts take `mission` from the series; the others name the fleet.
        assert labels.get("mission", "*") == "*", rule["alert"]
        if labels["scope"] == "mission":
            assert "by (mission" in rule["expr"] or "mission:" in rule["expr"], rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(notes), rule["alert"]
        anchor = notes["runbook_url"].partition("#")[2]
        assert notes["runbook_url"].startswith("docs/runbook.md#") and anchor in anchors, (
            f"{rule['alert']}: {notes['runbook_url']} has no section in docs/runbook.md")
