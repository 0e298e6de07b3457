"""`unhindered-collector report`: its options, the progress bar, and writing the file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collector.config import CollectorConfig
from collector.report.period import PeriodError, period_of
from unhindered.configfile import ConfigError

FORMATS = ("csv", "json", "html", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    when = parser.add_argument_group("period (one of)")
    when.add_argument("--year", type=int, help="a calendar year, e.g. 2026")
    when.add_argument("--quarter", help="a quarter, e.g. 2026-Q1")
    when.add_argument("--month", help="a month, e.g. 2026-02")
    when.add_argument("--from", dest="start", metavar="DATE",
                      help="first day, YYYY-MM-DD (with --to)")
    when.add_argument("--to", dest="end", metavar="DATE", help="last day, included")
    parser.add_argument("--tz", help="time zone of the period's boundaries, e.g. "
                                     "Europe/Paris (default: report.timezone, UTC)")
    parser.add_argument("--mission", action="append", default=[], metavar="CODE",
                        help="only this mission (repeatable)")
    parser.add_argument("--unknown", choices=("exclude", "down"),
                        help="counting policy for unknown time (default: report.unknown)")
    parser.add_argument("--format", choices=FORMATS,
                        help="default: from the output file's suffix, else csv")
    parser.add_argument("-o", "--output", type=Path,
                        help="file to write (default: standard output; pdf needs a file)")
    parser.add_argument("--lang", default="en",
                        help="language: ar, zh, en, fr, ru or es (default en)")


class _Progress:
    """A one-line bar on standard error, only when that is a terminal."""

    def __init__(self) -> None:
        self.shown = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.shown:
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} missions")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace, config: CollectorConfig) -> int:
    # Imported here: the other subcommands need not load the report's rendering stack.
    from collector.report.compute import compute
    from collector.report.formats import gettext_for, to_csv, to_json
    from collector.report.html import to_html
    from collector.report.policy import CountingPolicy
    from collector.store.database import Store
    from unhindered.i18n import LANGUAGES

    if args.lang not in LANGUAGES:
        print(f"unhindered-collector report: --lang {args.lang!r}: expected one of "
              f"{', '.join(LANGUAGES)}", file=sys.stderr)
        return 2
    fmt = args.format or (args.output.suffix.lstrip(".").lower() if args.output and
                          args.output.suffix.lstrip(".").lower() in FORMATS else "csv")
    if fmt == "pdf" and args.output is None:
        print("unhindered-collector: a PDF needs --output FILE", file=sys.stderr)
        return 2
    try:
        period = period_of(tz=args.tz or config.report.timezone, year=args.year,
                           quarter=args.quarter, month=args.month, start=args.start,
                           end=args.end)
        inventory = config.load_inventory()
    except PeriodError as exc:
        print(f"unhindered-collector report: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    policy = CountingPolicy(unknown=args.unknown or config.report.unknown)
    store = Store(config.database.url)
    try:
        store.migrate()
        report = compute(store, inventory, period, policy, set(args.mission) or None,
                         progress=_Progress())
    finally:
        store.close()
    _ = gettext_for(args.lang)
    if fmt == "pdf":
        from collector.report.pdf import to_pdf  # fpdf2 is only needed here

        data = to_pdf(report, inventory, args.lang)
    else:
        text = {"csv": lambda: to_csv(report, _), "json": lambda: to_json(report, _),
                "html": lambda: to_html(report, inventory, args.lang)}[fmt]()
        if args.output is None:
            sys.stdout.write(text)
            return 0
        data = text.encode()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"{fmt} report for {period.label} ({len(report.missions)} missions) written to "
          f"{args.output}", file=sys.stderr)
    return 0
