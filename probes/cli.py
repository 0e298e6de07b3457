"""unhindered-probe: the command line of the probe."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from probes import config as probe_config
from unhindered import logsetup
from unhindered.configfile import ConfigError

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unhindered-probe",
        description="Measure reachability, latency and loss from a mission and report them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the probe: schedule checks, queue and push results")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    once = sub.add_parser("once", help="run every check once, print the results as JSON lines")
    for p in (run, check, once):
        p.add_argument("-c", "--config", type=Path, required=True, help="the probe's YAML config")
    args = parser.parse_args(argv)

    try:
        config = probe_config.load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logsetup.setup(config.logging.format, config.logging.level)

    if args.command == "check-config":
        print(f"{args.config}: valid, {len(config.checks)} checks for probe "
              f"{config.probe_id} ({config.mission})")
        return 0
    if args.command == "once":
        from probes.rounds import measure_all

        results = asyncio.run(measure_all(config))
        for m in results:
            print(json.dumps(m.model_dump(mode="json")))
        return 0 if all(m.ok for m in results) else 1

    from probes.app import Probe
    from probes.enroll import EnrollmentFailed

    try:
        asyncio.run(Probe(config, args.config).run())
    except (OSError, EnrollmentFailed, sqlite3.Error) as exc:  # sqlite3: an unusable outbox
        print(f"unhindered-probe: {args.config}: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
