"""unhindered-collector: the command line of the collector."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from collector import config as collector_config
from collector import grafana_push
from collector.inventory.central import CentralChecks
from collector.store.database import ProbeExists, Store
from unhindered import cliargs, logsetup
from unhindered.configfile import ConfigError
from unhindered.measurement import Identifier, MissionCode
from unhindered.timefmt import iso_utc

EXIT_CONFIG = 2
log = logging.getLogger("collector")


def _settings(args: argparse.Namespace) -> collector_config.CollectorConfig:
    overrides: dict = {}
    if getattr(args, "database", None):
        overrides["database"] = collector_config.DatabaseSettings(url=args.database)
    if getattr(args, "listen", None):
        host, _, port = args.listen.rpartition(":")
        try:
            overrides["listen"] = collector_config.ListenSettings(
                host=host.strip("[]") or "127.0.0.1", port=int(port))
        except ValueError:  # pydantic's ValidationError too
            print(f"unhindered-collector: --listen {args.listen}: expected HOST:PORT with a "
                  "port from 1 to 65535, e.g. 127.0.0.1:9640", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
    if args.config:
        return collector_config.load(args.config, overrides)
    return collector_config.CollectorConfig().model_copy(update=overrides)


def _validated(kind, value: str, what: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        raise SystemExit(f"unhindered-collector: {what} {value!r} is not valid "
                         "(letters, digits and . _ : -; a mission code is upper case, "
                         "e.g. FRA)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unhindered-collector",
        description="Receive probe results, keep state and history, export Prometheus metrics.",
    )
    cliargs.add_common(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the collector")
    serve.add_argument("--listen", help="HOST:PORT to bind (overrides the config file)")

    sub.add_parser("check-config", help="validate the config file and exit")

    probes = sub.add_parser("probes", help="register, list and revoke probes")
    probes_sub = probes.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = probes_sub.add_parser(
        "add", help="register a probe and print its one-time enrollment token")
    add.add_argument("--mission", required=True, help="mission code, e.g. FRA")
    add.add_argument("--id", help="probe id (default: <mission>-1, -2, ... in lower case)")
    add.add_argument("--valid-days", type=float, default=7,
                     help="how long the enrollment token may wait to be used (default 7)")
    add.add_argument("--token-file", type=Path,
                     help="skip enrollment: write the probe's credential itself to this file "
                          "(mode 0600), for provisioning tools")
    probes_sub.add_parser("list", help="list registered probes").add_argument(
        "--json", action="store_true", help="one JSON object a probe")
    revoke = probes_sub.add_parser("revoke", help="revoke a probe's credential")
    revoke.add_argument("probe_id")

    readers = sub.add_parser("readers", help="read-only API credentials")
    readers_sub = readers.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_reader = readers_sub.add_parser("add", help="create one and print its token once")
    add_reader.add_argument("--name", required=True, help="who uses it, e.g. grafana")
    readers_sub.add_parser("list", help="list read-only credentials").add_argument(
        "--json", action="store_true", help="one JSON object a credential")
    revoke_reader = readers_sub.add_parser("revoke", help="revoke one")
    revoke_reader.add_argument("name")

    grafana_push.add_parser(sub)

    demo = sub.add_parser("demo", help="run a collector and probes on loopback, print URLs")
    demo.add_argument("--seconds", type=float, default=0,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--port", type=int, default=collector_config.DEFAULT_PORT)
    demo.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")

    amconfig = sub.add_parser(
        "alertmanager-config",
        help="write Alertmanager's config and e-mail template from the inventory")
    amconfig.add_argument("--out", type=Path, default=Path("alertmanager"),
                          help="directory to write alertmanager.yml and the template into")
    silences = sub.add_parser(
        "alertmanager-silences",
        help="turn the inventory's maintenance windows into Alertmanager silences")
    silences.add_argument("--alertmanager-url",
                          help="e.g. http://127.0.0.1:9093 (default: alerting.alertmanager_url)")
    silences.add_argument("--days", type=float, default=7,
                          help="silence windows starting within this many days (default 7)")
    from collector.report import command as report_command

    report_command.add_arguments(sub.add_parser(
        "report", help="uptime report for a year, quarter, month or dates (docs/reports.md)"))

    cliargs.add_placed(parser, "-c", "--config", dest="config", type=Path, metavar="FILE",
                       help="the collector's YAML config (default: built-in settings)")
    cliargs.add_placed(parser, "--database", dest="database", metavar="URL",
                       help="database URL (overrides the config file)")
    cliargs.add_placed(parser, "--verbose", dest="verbose", action="store_true",
                       help="log at DEBUG, the libraries' messages included")

    args = parser.parse_args(argv)
    cliargs.resolve(parser, args, "config", same=cliargs.same_file)
    cliargs.resolve(parser, args, "database")
    cliargs.resolve(parser, args, "verbose")
    try:
        config = _settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logsetup.setup(config.logging.format, config.logging.level, args.verbose)

    if args.command == "check-config":
        try:
            inventory = config.load_inventory()
            if config.checks_file is not None:
                CentralChecks(config.checks_file)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        print(f"{args.config or '(defaults)'}: valid; inventory of "
              f"{len(inventory.missions)} missions")
        return 0
    if args.command == "dashboards":
        return grafana_push.run(args)
    if args.command == "demo":
        from collector.demo import run_demo

        return run_demo(args.dir, args.port, args.seconds)
    if args.command in ("alertmanager-config", "alertmanager-silences"):
        from collector.alerting.commands import run_alerting_command

        return run_alerting_command(args, config)
    if args.command in ("probes", "readers"):
        from collector.store.ownership import require_service_user

        require_service_user(config.database.url, argv, [getattr(args, "token_file", None)])
    if args.command == "probes":
        return _probes(args, Store(config.database.url))
    if args.command == "readers":
        return _readers(args, Store(config.database.url))
    if args.command == "report":
        return report_command.run(args, config)

    from collector.store.database import DatabaseGone
    from collector.store.writer import AnotherWriter
    from collector.web import serve
    from collector.web.app import create_app

    store = Store(config.database.url)
    try:
        app = create_app(config, store)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    # Not web.run_app: the connection limit, header timeout and raw lingering close need
    # their own protocol factory in front of aiohttp's (collector/web/serve.py). It says
    # where it listens once it does.
    try:
        serve.run(app, config)
    except (AnotherWriter, DatabaseGone) as exc:  # at start: one line, what to do
        print(f"unhindered-collector: {exc}", file=sys.stderr)
        return 1
    return 0


def _probes(args: argparse.Namespace, store: Store) -> int:
    store.migrate()
    if args.action == "add":
        mission = _validated(MissionCode, args.mission, "mission")
        existing = {p.probe_id for p in store.list_probes()}
        probe_id = args.id
        if probe_id is None:
            n = 1
            while f"{mission.lower()}-{n}" in existing:
                n += 1
            probe_id = f"{mission.lower()}-{n}"
        probe_id = _validated(Identifier, probe_id, "probe id")
        try:
            if args.token_file:
                token = store.add_probe(probe_id, mission)
            else:
                token = store.enroll_probe(probe_id, mission, args.valid_days * 86_400)
        except ProbeExists:
            print(f"unhindered-collector: probe {probe_id} already exists; pick another --id "
                  "or revoke it first", file=sys.stderr)
            return 1
        if args.token_file:
            try:
                _write_secret(args.token_file, token)
            except OSError as exc:
                print(f"unhindered-collector: probe {probe_id} is registered, but its "
                      f"credential could not be written to {args.token_file}: "
                      f"{exc.strerror}. Revoke it (probes revoke {probe_id}) and add it "
                      "again with a --token-file that can be written", file=sys.stderr)
                return 1
            print(f"probe {probe_id} ({mission}) registered; its credential is in "
                  f"{args.token_file}")
        else:
            print(f"probe {probe_id} ({mission}) registered. Its enrollment token, shown only "
                  f"once, works once within {args.valid_days:g} days:")
            print(token)
            print("Put it in the probe's config (collector.enrollment_token); on its first "
                  "start the probe trades it for its credential.", file=sys.stderr)
        return 0
    if args.action == "list":
        rows = [{"mission": p.mission, "probe": p.probe_id,
                 "state": "revoked" if p.revoked_at else "active" if p.enrolled else "enrolling",
                 "last_report": _when(p.last_report_at), "backlog": p.backlog,
                 "version": p.version} for p in store.list_probes()]
        _print_list(rows, args.json, "no probes registered: add one with probes add")
        return 0
    if store.revoke_probe(args.probe_id):
        print(f"probe {args.probe_id} revoked: its token is refused from now on")
        return 0
    print(f"unhindered-collector: no active probe {args.probe_id}", file=sys.stderr)
    return 1


def _when(t: float | None) -> str | None:
    return None if t is None else iso_utc(t)


def _print_list(rows: list[dict], as_json: bool, empty: str) -> None:
    """A table for people (absent values "-", times "never"), or one JSON object a line."""
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if not rows:
        print(empty, file=sys.stderr)
        return
    header = [name.replace("_", " ").upper() for name in rows[0]]
    print(cliargs.table(header, [
        ["never" if v is None and k == "last_report" else v for k, v in row.items()]
        for row in rows]))


def _write_secret(path: Path, secret: str) -> None:
    """Writes a new file, mode 0600, and renames it over `path`: whatever was there before
    (a file readable by others), the secret never is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _readers(args: argparse.Namespace, store: Store) -> int:
    store.migrate()
    if args.action == "add":
        name = _validated(Identifier, args.name, "name")
        try:
            token = store.add_reader(name)
        except ProbeExists:
            print(f"unhindered-collector: a reader named {name} exists already",
                  file=sys.stderr)
            return 1
        print(f"read-only credential {name} created. Its token, shown only once:")
        print(token)
        return 0
    if args.action == "list":
        rows = [{"name": r.name, "state": "revoked" if r.revoked_at else "active",
                 "created": _when(r.created_at), "revoked": _when(r.revoked_at)}
                for r in store.list_readers()]
        _print_list(rows, args.json, "no read-only credentials: add one with readers add")
        return 0
    if store.revoke_reader(args.name):
        print(f"reader {args.name} revoked")
        return 0
    print(f"unhindered-collector: no active reader {args.name}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
