"""docs/security.md's tables of limits, and the shipped example configs, state the true
defaults: each row with a setting is checked against the configuration models, and each
example shows every limit with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from collector import config as collector_config
from probes import config as probe_config
from unhindered.configfile import parse_model

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
EXAMPLES = ROOT / "deploy" / "examples"


def documented() -> dict[str, str]:
    """setting -> its default cell, from every table row of the page naming one."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`[a-z_.]+`", cells[1]):
            rows[cells[1].strip("`")] = cells[2]
    return rows


def first_number(cell: str) -> float:
    return float(re.match(r"[\d,]+", cell).group().replace(",", ""))


def default_of(model, dotted: str):
    *sections, name = dotted.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    return model.model_fields[name].default


COLLECTOR = ["limits.max_connections", "limits.header_timeout_s", "limits.keepalive_timeout_s",
             "limits.body_timeout_s", "limits.enroll_per_minute", "ingest.max_body_bytes",
             "ingest.max_future_s", "retention.raw_days"]
PROBE = ["outbox_max_mib", "collector.batch_max_size", "collector.timeout_s"]


def test_every_limit_is_in_the_table():
    rows = documented()
    for name in collector_config.LimitsSettings.model_fields:
        assert f"limits.{name}" in rows, f"limits.{name} is missing from {DOC.name}"
    assert set(COLLECTOR) | set(PROBE) <= set(rows)


@pytest.mark.parametrize("setting", COLLECTOR)
def test_the_collectors_defaults_are_the_documented_ones(setting):
    assert first_number(documented()[setting]) == default_of(
        collector_config.CollectorConfig, setting)


def test_the_probes_defaults_are_the_documented_ones():
    rows = documented()
    assert first_number(rows["outbox_max_mib"]) == default_of(probe_config.ProbeConfig,
                                                              "outbox_max_mib")
    for setting in ("collector.batch_max_size", "collector.timeout_s"):
        assert first_number(rows[setting]) == default_of(probe_config.CollectorSettings,
                                                         setting.split(".")[1])


def test_the_documented_descriptor_limit_is_the_units():
    unit = (ROOT / "deploy" / "systemd" / "unhindered-collector.service").read_text()
    (shipped,) = re.findall(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert f"`LimitNOFILE=` in the unit | {shipped} |" in DOC.read_text()


def test_the_collector_example_shows_every_limit_with_its_default():
    shown = yaml.safe_load((EXAMPLES / "collector.yaml").read_text())
    defaults = collector_config.LimitsSettings()
    assert set(shown["limits"]) == set(collector_config.LimitsSettings.model_fields)
    assert collector_config.LimitsSettings(**shown["limits"]) == defaults
    assert collector_config.IngestSettings(**shown["ingest"]) == collector_config.IngestSettings()
    # parse_model: the files the example names (/var/lib/unhindered) are not here.
    example = EXAMPLES / "collector.yaml"
    loaded = parse_model(example.read_text(), example, collector_config.CollectorConfig)
    assert loaded.limits == defaults


def test_the_probe_example_shows_the_outbox_bound_with_its_default():
    shown = yaml.safe_load((EXAMPLES / "probe.yaml").read_text())
    assert shown["outbox_max_mib"] == default_of(probe_config.ProbeConfig, "outbox_max_mib")
    example = EXAMPLES / "probe.yaml"
    loaded = parse_model(example.read_text(), example, probe_config.ProbeConfig)
    assert loaded.outbox_max_mib == shown["outbox_max_mib"]
