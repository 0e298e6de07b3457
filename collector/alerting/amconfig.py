"""The Alertmanager configuration generated from the inventory
(`unhindered-collector alertmanager-config`), and its e-mail templates.

Routing: every alert goes to the centre; an alert labelled `mission="FRA"` also goes to
FRA's contacts (a route per mission with `continue: true`, then a catch-all route for the
centre, since a parent's receiver is not used once a child route matched). Alerts are
grouped by mission, so one e-mail tells a mission about all of its outages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from collector.config import AlertingSettings
from collector.inventory.sites import Inventory
from unhindered.i18n import load_translations

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "alertmanager"
TEMPLATE_FILE = "unhindered-email.tmpl"
DOMAIN = "alerts"  # gettext domain of the e-mails: babel-alerts.cfg, unhindered/locale/
CENTRE = "centre"
WATCHDOG = "watchdog"

# Per alert, what a mission (or the centre) should look at; translated with the e-mails.
def _advice(_: Any) -> dict[str, str]:
    return {
        "MissionAccessDown": _(
            "the mission's router and Internet line (lights, power), then call the "
            "provider; if only one group of sites fails, tell the centre."),
        "MissionAccessDegraded": _(
            "what uses the line now (large transfers, video), then the provider's "
            "status; loss or delay above the mission's thresholds lasts."),
        "MissionProbeSilent": _(
            "whether the mission's Internet line works; if it does, whether the probe "
            "is powered and connected."),
        "TargetDownFleetWide": _(
            "the target itself and the path to it: many missions fail to reach it at once."),
        "CollectorDown": _("the collector's service and host; mission alerts wait for it."),
        "TLSCertificateExpiring": _("renew the certificate of the service named."),
        "MissionAvailabilityBudgetBurn": _(
            "the mission's recent outages: it is losing its monthly outage budget fast."),
        "MissionAvailabilityBudgetBurnSlow": _(
            "the mission's recent outages: they exceed its monthly outage budget."),
    }


def render_email_template(settings: AlertingSettings) -> str:
    """The Go template file Alertmanager loads, in `settings.language`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), extensions=["jinja2.ext.i18n"],
        variable_start_string="[[", variable_end_string="]]",
        block_start_string="[%", block_end_string="%]",
        comment_start_string="[#", comment_end_string="#]",
        keep_trailing_newline=True, autoescape=False)
    translations = load_translations(settings.language, DOMAIN)
    env.install_gettext_translations(translations, newstyle=True)
    return env.get_template("email.tmpl").render(
        advice=_advice(translations.gettext), status_url=settings.status_url,
        runbook_url=settings.runbook_url)


def _seconds(value: float) -> str:
    return f"{int(value)}s"


def _email(to: list[str], settings: AlertingSettings) -> dict[str, Any]:
    return {
        "to": ", ".join(to),
        "send_resolved": True,
        "headers": {"Subject": '{{ template "unhindered.subject" . }}'},
        "text": '{{ template "unhindered.text" . }}',
        "html": "",  # text only: read the same in every mail client
        "from": settings.smtp_from,
        "smarthost": settings.smtp_smarthost,
        "require_tls": settings.smtp_require_tls,
    }


def mission_receiver(code: str) -> str:
    return f"mission-{code}"


def build_config(inventory: Inventory, settings: AlertingSettings,
                 template_dir: Path) -> dict[str, Any]:
    """The Alertmanager configuration as a mapping (yaml.safe_dump it)."""
    centre: dict[str, Any] = {"name": CENTRE}
    if settings.centre_contacts:
        centre["email_configs"] = [_email(list(settings.centre_contacts), settings)]
    watchdog: dict[str, Any] = {"name": WATCHDOG}
    if settings.watchdog_url:
        watchdog["webhook_configs"] = [{"url": settings.watchdog_url, "send_resolved": False}]
    receivers = [centre, watchdog]
    routes: list[dict[str, Any]] = [
        # The heartbeat goes to the dead-man's switch only, re-sent every minute.
        {"receiver": WATCHDOG, "matchers": ['alertname="Watchdog"'],
         "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"},
    ]
    for mission in inventory.missions:
        receiver: dict[str, Any] = {"name": mission_receiver(mission.code)}
        if mission.contacts:
            receiver["email_configs"] = [_email(list(mission.contacts), settings)]
        receivers.append(receiver)
        routes.append({"receiver": receiver["name"],
                       "matchers": [f'mission="{mission.code}"'], "continue": True})
    routes.append({"receiver": CENTRE})  # everything, mission alerts included
    return {
        "global": {"resolve_timeout": "5m"},
        "templates": [str(template_dir / TEMPLATE_FILE)],
        "route": {
            "receiver": CENTRE,
            "group_by": ["mission"],
            "group_wait": _seconds(settings.group_wait_s),
            "group_interval": _seconds(settings.group_interval_s),
            "repeat_interval": _seconds(settings.repeat_interval_s),
            "routes": routes,
        },
        "inhibit_rules": [
            # Without the collector nothing about missions is known: hold them all back.
            # The CollectorDown alert itself is scope=collector and still pages.
            {"source_matchers": ['alertname="CollectorDown"'],
             "target_matchers": ['scope="mission"']},
            # A target down from many missions explains their group being down.
            {"source_matchers": ['alertname="TargetDownFleetWide"'],
             "target_matchers": ['alertname=~"MissionAccessDown|MissionAccessDegraded"'],
             "equal": ["group"]},
            # A silent mission's per-group states are not news.
            {"source_matchers": ['alertname="MissionProbeSilent"'],
             "target_matchers": ['alertname=~"MissionAccessDown|MissionAccessDegraded"'],
             "equal": ["mission"]},
        ],
        "receivers": receivers,
    }


def write_config(inventory: Inventory, settings: AlertingSettings, out_dir: Path) -> Path:
    """Writes alertmanager.yml and the e-mail template into `out_dir`; returns the config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    (out_dir / TEMPLATE_FILE).write_text(render_email_template(settings))
    config = out_dir / "alertmanager.yml"
    header = ("# GENERATED by `unhindered-collector alertmanager-config` from the mission "
              "inventory:\n# edit the inventory or the collector's alerting settings, "
              "not this file.\n")
    config.write_text(header + yaml.safe_dump(build_config(inventory, settings, out_dir),
                                              sort_keys=False, allow_unicode=True))
    return config
