"""unhindered-probe: the command line of the probe."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from probes import config as probe_config
from unhindered import cliargs, logsetup
from unhindered.configfile import ConfigError
from unhindered.timefmt import iso_utc

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unhindered-probe",
        description="Measure reachability, latency and loss from a mission and report them.",
    )
    cliargs.add_common(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the probe: schedule checks, queue and push results")
    sub.add_parser("check-config", help="validate a config file and exit")
    once = sub.add_parser("once", help="run every check once and print the results")
    once.add_argument("--json", action="store_true",
                      help="one JSON object a result, as the probe sends them")
    cliargs.add_placed(parser, "-c", "--config", dest="config", type=Path, metavar="FILE",
                       help="the probe's YAML config (required)")
    cliargs.add_placed(parser, "--verbose", dest="verbose", action="store_true",
                       help="log at DEBUG, the libraries' messages included")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    cliargs.resolve(parser, args, "config", same=cliargs.same_file)
    cliargs.resolve(parser, args, "verbose")
    if args.config is None:
        parser.error(f"{args.command} needs the probe's config: "
                     f"unhindered-probe {args.command} -c FILE")

    try:
        config = probe_config.load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logsetup.setup(config.logging.format, config.logging.level, args.verbose)

    if args.command == "check-config":
        count = len(config.checks)
        print(f"{args.config}: valid, {count} check{'' if count == 1 else 's'} for probe "
              f"{config.probe_id} ({config.mission})")
        return 0
    if args.command == "once":
        from probes.rounds import measure_all

        try:
            results = asyncio.run(measure_all(config))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        if args.json:
            for m in results:
                print(json.dumps(m.model_dump(mode="json")))
        else:
            print(_results_table(results))
        return 0 if all(m.ok for m in results) else 1

    from probes.app import Probe
    from probes.enroll import EnrollmentFailed

    try:
        asyncio.run(Probe(config, args.config).run())
    except (OSError, EnrollmentFailed, sqlite3.Error) as exc:  # sqlite3: an unusable outbox
        print(f"unhindered-probe: {args.config}: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # Ctrl-C before the probe took over SIGINT (enrolling)
        return EXIT_INTERRUPTED
    return 0


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds * 1000:.1f} ms"


def _results_table(results: list) -> str:
    rows = []
    for m in results:
        f = m.figures
        # The time a round is judged by: the median echo, the connect, the whole request,
        # the answer.
        rtt = {"icmp": getattr(f, "rtt_median_s", None), "tcp": getattr(f, "connect_s", None),
               "http": m.duration_s if m.ok else None,
               "dns": getattr(f, "query_s", None)}[m.kind]
        loss = f"{f.loss_ratio:.0%} of {f.sent}" if m.kind == "icmp" else None
        reason = m.reason.value if m.reason else None
        if m.detail:
            reason = f"{reason}: {m.detail}" if reason else m.detail
        rows.append((m.check_id, m.kind, m.target, "yes" if m.ok else "NO", reason,
                     _ms(rtt), loss, iso_utc(m.started_at)))
    return cliargs.table(("CHECK", "KIND", "TARGET", "OK", "REASON", "RTT", "LOSS", "TIME"), rows)


if __name__ == "__main__":
    sys.exit(main())
