"""The whole alerting path in the lab, for the end-to-end test and the alert benchmark:
lab probes -> a real collector (posting its alerts directly) -> a real Prometheus (scraping
it, evaluating alerts/) -> a real Alertmanager (configured from the inventory by the
collector's generator) -> an SMTP sink. All of it in the lab's centre namespace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.alerting.amconfig import TEMPLATE_FILE, build_config, render_email_template
from collector.config import AlertingSettings
from collector.inventory.sites import load_inventory
from tests.support.promstack import Alertmanager, Place, Prometheus, alertmanager, prometheus
from tests.support.smtp_sink import Sink, smtp_sink
from tests.support.spine import COLLECTOR_PORT, Collector, Probe

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "alerts" / "unhindered.rules.yml"
CENTRE_MAIL = "noc@centre.example.org"


def contact(code: str) -> str:
    return f"noc@{code.lower()}.example.org"


def inventory_yaml(codes: Sequence[str]) -> str:
    return yaml.safe_dump({"missions": [{
        "code": code, "name": f"Mission {code}", "kind": "member_state",
        "duty_station": "New York", "city": "New York",
        "coordinates": {"lat": 40.75, "lon": -73.97}, "contacts": [contact(code)],
    } for code in codes]})


@dataclass
class AlertLab:
    collector: Collector
    alertmanager: Alertmanager
    prometheus: Prometheus
    sink: Sink
    probes: dict[str, Probe] = field(default_factory=dict)


@contextlib.contextmanager
def alert_lab(lab: Any, workdir: Path, missions: Sequence[Any],
              checks: list[dict] | Mapping[str, list[dict]], *,
              interval: str = "1s", group_wait_s: float = 1, group_interval_s: float = 2,
              resend_s: float = 2, states: Mapping[str, Any] | None = None,
              scrape_configs: Sequence[Mapping[str, Any]] = (),
              rule_files: Sequence[Path] = (),
              probe_settings: Mapping[str, Any] | None = None,
              rules: Path = RULES) -> Iterator[AlertLab]:
    """Everything started (probes measuring), torn down in reverse order on exit.
    `checks`: every probe's, or each mission's by its code; `probe_settings`: the probes'
    `collector:` settings over the lab's quick ones; `rules`: the project's alert rules,
    or a copy of them."""
    place = Place.in_lab(lab, lab.centre.name)
    codes = [m.code for m in missions]
    inventory = workdir / "inventory.yaml"
    inventory.write_text(inventory_yaml(codes))
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(smtp_sink(place))
        settings = AlertingSettings(
            centre_contacts=(CENTRE_MAIL,), smtp_smarthost=sink.smarthost,
            smtp_require_tls=False, smtp_from="unhindered@centre.example.org",
            group_wait_s=group_wait_s, group_interval_s=group_interval_s)
        am_dir = workdir / "alertmanager"
        am_dir.mkdir()
        (am_dir / TEMPLATE_FILE).write_text(render_email_template(settings))
        am_config = build_config(load_inventory(inventory), settings, am_dir)
        am = stack.enter_context(alertmanager(yaml.safe_dump(am_config), place=place))
        collector = Collector(lab, workdir, config={
            "inventory": str(inventory),
            "alerting": {"alertmanager_url": am.url, "resend_s": resend_s},
            **({"states": dict(states)} if states else {}),
        })
        collector.start()
        stack.callback(collector.stop)
        prom = stack.enter_context(prometheus(
            [f"{lab.centre.ipv4}:{COLLECTOR_PORT}"], rule_files=[rules, *rule_files],
            alertmanager_url=am.url, place=place, interval=interval,
            scrape_configs=scrape_configs))
        stack_lab = AlertLab(collector, am, prom, sink)
        for mission in missions:
            own = checks[mission.code] if isinstance(checks, Mapping) else checks
            probe = Probe(lab, mission, workdir, collector, own, **(probe_settings or {}))
            probe.start()
            stack_lab.probes[mission.code] = probe
        yield stack_lab
