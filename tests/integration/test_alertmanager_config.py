"""The Alertmanager configuration generated from the inventory, checked by the real amtool:
valid, routes a mission's alert to that mission and the centre only, and renders the
e-mails a mission reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from collector.cli import main
from tests.support import require_program

FRA_ONLY = """\
defaults: {timezone: Europe/Paris}
missions:
  - code: FRA
    name: France
    kind: member_state
    duty_station: Geneva
    city: Geneva
    coordinates: {lat: 46.2, lon: 6.1}
    contacts: [noc@fra.example.org, it@fra.example.org]
  - code: GBR
    name: United Kingdom
    kind: member_state
    duty_station: Geneva
    city: Geneva
    coordinates: {lat: 46.2, lon: 6.1}
    contacts: [noc@gbr.example.org]
"""


def _amtool(*args: str) -> str:
    amtool = require_program("amtool", "prometheus-alertmanager")
    done = subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _generate(tmp_path: Path, inventory: str | None = None) -> Path:
    config = tmp_path / "collector.yaml"
    settings: dict = {"alerting": {"centre_contacts": ["noc@centre.example.org"],
                                   "smtp_smarthost": "127.0.0.1:2525",
                                   "smtp_from": "unhindered@centre.example.org"}}
    if inventory is not None:
        (tmp_path / "inventory.yaml").write_text(inventory)
        settings["inventory"] = "inventory.yaml"
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "am"
    assert main(["-c", str(config), "alertmanager-config", "--out", str(out)]) == 0
    return out / "alertmanager.yml"


@pytest.fixture(scope="module")
def default_config(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("default"))


def _route(config: Path, *labels: str) -> str:
    return _amtool("config", "routes", "test", f"--config.file={config}", *labels).strip()


def test_the_default_inventory_gives_a_valid_config(default_config):
    out = _amtool("check-config", str(default_config))
    assert "SUCCESS" in out
    assert " - 197 receivers" in out  # 195 missions, the centre, the watchdog


def test_a_mission_alert_reaches_that_mission_and_the_centre_only(default_config):
    assert _route(default_config, "mission=FRA", "alertname=MissionAccessDown",
                  "severity=critical") == "mission-FRA,centre"
    assert _route(default_config, "mission=GBR") == "mission-GBR,centre"
    # Fleet-wide and collector alerts: the centre alone; the heartbeat: the switch alone.
    assert _route(default_config, "mission=*", "alertname=TargetDownFleetWide") == "centre"
    assert _route(default_config, "alertname=Watchdog", "mission=*") == "watchdog"


def test_routes_send_resolved_mail_to_the_contacts_grouped_by_mission(tmp_path):
    config = yaml.safe_load(_generate(tmp_path, FRA_ONLY).read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    fra = receivers["mission-FRA"]["email_configs"][0]
    assert fra["to"] == "noc@fra.example.org, it@fra.example.org"
    assert fra["send_resolved"] is True
    assert receivers["centre"]["email_configs"][0]["to"] == "noc@centre.example.org"
    assert config["route"]["group_by"] == ["mission"]
    inhibit = {r["source_matchers"][0]: r for r in config["inhibit_rules"]}
    # Collector down holds back every mission alert, with no `equal`: all of them.
    assert inhibit['alertname="CollectorDown"']["target_matchers"] == ['scope="mission"']
    assert "equal" not in inhibit['alertname="CollectorDown"']
    assert inhibit['alertname="TargetDownFleetWide"']["equal"] == ["group"]


def test_a_broken_inventory_is_refused_naming_the_file(tmp_path, capsys):
    (tmp_path / "inventory.yaml").write_text("missions:\n  - code: fra\n")
    config = tmp_path / "collector.yaml"
    config.write_text("inventory: inventory.yaml\n")
    assert main(["-c", str(config), "alertmanager-config", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "inventory.yaml" in err and "code" in err
    assert not (tmp_path / "o").exists()


def test_a_zero_group_wait_is_refused_naming_the_field(tmp_path, capsys):
    # With no wait, a mission alert can be mailed before the fleet-wide alert that
    # explains it inhibits it: the setting must say so rather than lose the inhibition.
    config = tmp_path / "collector.yaml"
    config.write_text("alerting: {group_wait_s: 0}\n")
    assert main(["-c", str(config), "alertmanager-config", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "collector.yaml" in err and "group_wait_s" in err and "1" in err
    assert not (tmp_path / "o").exists()


def test_email_catalogs_are_current_and_french_mail_is_french(tmp_path):
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2]
    with (root / "babel-alerts.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    used = {msg for _f, _l, msg, _c, _ctx in extract_from_dir(str(root), method_map,
                                                              options_map)}
    locale = root / "unhindered" / "locale"
    with (locale / "alerts.pot").open("rb") as f:
        assert {m.id for m in read_po(f) if m.id} == used, "run pybabel extract (docs/alerts.md)"
    for lang in ("ar", "zh", "fr", "ru", "es"):
        with (locale / lang / "LC_MESSAGES" / "alerts.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        assert {m.id for m in catalog if m.id} == used, f"run pybabel update for {lang}"
        assert not list(catalog.check()), f"{lang}: placeholders differ"
        if lang == "fr":
            assert all(m.string for m in catalog if m.id), "French is incomplete"

    config = tmp_path / "collector.yaml"
    config.write_text("alerting: {language: fr}\n")
    assert main(["-c", str(config), "alertmanager-config", "--out", str(tmp_path / "fr")]) == 0
    template = (tmp_path / "fr" / "unhindered-email.tmpl").read_text()
    assert "Ce qui est en panne :" in template and "What is down" not in template
    assert "SUCCESS" in _amtool("check-config", str(tmp_path / "fr" / "alertmanager.yml"))
    config.write_text("alerting: {language: de}\n")
    assert main(["-c", str(config), "alertmanager-config", "--out", str(tmp_path / "de")]) == 2
