"""unhindered-collector: the command line of the collector."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from collector import config as collector_config
from collector.store import ProbeExists, Store
from probes import logsetup
from probes.configfile import ConfigError
from probes.measurement import Identifier, MissionCode

EXIT_CONFIG = 2
log = logging.getLogger("collector")


def _settings(args: argparse.Namespace) -> collector_config.CollectorConfig:
    config = (collector_config.load(args.config) if args.config
              else collector_config.CollectorConfig())
    overrides: dict = {}
    if getattr(args, "database", None):
        overrides["database"] = collector_config.DatabaseSettings(url=args.database)
    if getattr(args, "listen", None):
        host, _, port = args.listen.rpartition(":")
        overrides["listen"] = collector_config.ListenSettings(host=host.strip("[]") or "127.0.0.1",
                                                              port=int(port))
    return config.model_copy(update=overrides)


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
    parser.add_argument("-c", "--config", type=Path, help="the collector's YAML config")
    parser.add_argument("--database", help="database URL (overrides the config file)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the collector")
    serve.add_argument("--listen", help="HOST:PORT to bind (overrides the config file)")

    sub.add_parser("check-config", help="validate the config file and exit")

    probes = sub.add_parser("probes", help="register, list and revoke probes")
    probes_sub = probes.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = probes_sub.add_parser("add", help="register a probe and print its token once")
    add.add_argument("--mission", required=True, help="mission code, e.g. FRA")
    add.add_argument("--id", help="probe id (default: <mission>-1, -2, ... in lower case)")
    add.add_argument("--token-file", type=Path,
                     help="write the token to this file (mode 0600) instead of printing it")
    probes_sub.add_parser("list", help="list registered probes")
    revoke = probes_sub.add_parser("revoke", help="revoke a probe's token")
    revoke.add_argument("probe_id")

    demo = sub.add_parser("demo", help="run a collector and probes on loopback, print URLs")
    demo.add_argument("--seconds", type=float, default=0,
                      help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--port", type=int, default=collector_config.DEFAULT_PORT)
    demo.add_argument("--dir", type=Path, help="working directory (default: a new temp dir)")

    args = parser.parse_args(argv)
    try:
        config = _settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logsetup.setup(config.logging.format, config.logging.level)

    if args.command == "check-config":
        print(f"{args.config or '(defaults)'}: valid")
        return 0
    if args.command == "demo":
        from collector.demo import run_demo

        return run_demo(args.dir, args.port, args.seconds)
    if args.command == "probes":
        return _probes(args, Store(config.database.url))

    from aiohttp import web

    from collector.web import create_app

    store = Store(config.database.url)
    app = create_app(config, store)
    print(f"unhindered-collector listening on http://{config.listen.host}:{config.listen.port}/ "
          f"(metrics at /metrics)", file=sys.stderr, flush=True)
    web.run_app(app, host=config.listen.host, port=config.listen.port, print=None,
                access_log=None)
    return 0


def _probes(args: argparse.Namespace, store: Store) -> int:
    store.create_schema()
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
            token = store.add_probe(probe_id, mission)
        except ProbeExists:
            print(f"unhindered-collector: probe {probe_id} already exists; pick another --id "
                  "or revoke it first", file=sys.stderr)
            return 1
        if args.token_file:
            args.token_file.parent.mkdir(parents=True, exist_ok=True)
            args.token_file.touch(mode=0o600)
            args.token_file.write_text(token + "\n")
            print(f"probe {probe_id} ({mission}) registered; token written to {args.token_file}")
        else:
            print(f"probe {probe_id} ({mission}) registered. Its token, shown only once:")
            print(token)
        return 0
    if args.action == "list":
        for p in store.list_probes():
            status = "revoked" if p.revoked_at else "active"
            print(f"{p.probe_id}\t{p.mission}\t{status}")
        return 0
    if store.revoke_probe(args.probe_id):
        print(f"probe {args.probe_id} revoked: its token is refused from now on")
        return 0
    print(f"unhindered-collector: no active probe {args.probe_id}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
