"""`unhindered-collector alertmanager-config` and `alertmanager-silences`."""

from __future__ import annotations

import argparse
import sys
import time

from collector.alerting import silences
from collector.alerting.amapi import AlertmanagerError
from collector.alerting.amconfig import write_config
from collector.config import CollectorConfig
from unhindered.configfile import ConfigError

EXIT_CONFIG = 2


def run_alerting_command(args: argparse.Namespace, config: CollectorConfig) -> int:
    try:
        inventory = config.load_inventory()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "alertmanager-config":
        path = write_config(inventory, config.alerting, args.out)
        print(f"wrote {path} and its e-mail template: {len(inventory.missions)} missions; "
              f"check it with 'amtool check-config {path}'")
        return 0
    url = args.alertmanager_url or config.alerting.alertmanager_url
    if not url:
        print("unhindered-collector: no Alertmanager to talk to: pass --alertmanager-url or "
              "set alerting.alertmanager_url in the config", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = silences.sync(url, inventory, time.time(), args.days * 86_400)
    except AlertmanagerError as exc:
        print(f"unhindered-collector: {exc}", file=sys.stderr)
        return 1
    for w in result.created:
        print(f"silenced {w.mission} from {silences.iso(w.start)} to {silences.iso(w.end)}")
    print(f"{len(result.created)} silences created, {len(result.kept)} already there, "
          f"{len(result.expired)} no longer in the inventory expired")
    return 0
