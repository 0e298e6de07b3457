"""`python -m probes.path --address A --method tcp --port 443`: records one path and
prints it as one line of JSON (a PathRecord), then exits. The probe runs it as a
subprocess with a hard timeout (probes/path/runner.py), so scapy never loads into the
probe's steady process. Exit status 0 with a record (which may carry `error`), 2 for bad
arguments."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from datetime import UTC, datetime
from typing import get_args

from unhindered.measurement import clean_text
from unhindered.path import MAX_PATH_HOPS, PathMethod, PathRecord, Trigger


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m probes.path", description=__doc__)
    parser.add_argument("--address", required=True, help="the target's IP address")
    parser.add_argument("--method", required=True, choices=get_args(PathMethod))
    parser.add_argument("--port", type=int, help="for udp and tcp")
    parser.add_argument("--max-hops", type=int, default=30)
    parser.add_argument("--wait", type=float, default=2.0,
                        help="seconds to wait for answers after each wave")
    parser.add_argument("--attempts", type=int, default=2, help="waves at most")
    parser.add_argument("--trigger", choices=get_args(Trigger), default="failure")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        address = str(ipaddress.ip_address(args.address))
    except ValueError:
        print(f"--address: not an IP address: {args.address!r}", file=sys.stderr)
        return 2
    if (args.method == "icmp") != (args.port is None) or not 1 <= args.max_hops <= \
            MAX_PATH_HOPS or not 1 <= args.attempts <= 5 or not 0 < args.wait <= 30:
        print("bad arguments: icmp takes no --port, udp/tcp need one; --max-hops "
              f"1..{MAX_PATH_HOPS}, --attempts 1..5, --wait 0..30", file=sys.stderr)
        return 2
    started_at = datetime.now(UTC)
    try:
        from probes.path.trace import record  # scapy: only here

        result = record(address, args.method, args.port, max_hops=args.max_hops,
                        wait_s=args.wait, attempts=args.attempts, trigger=args.trigger)
    except OSError as exc:  # no CAP_NET_RAW, no route to the target
        result = PathRecord(method=args.method, port=args.port, address=address,
                            trigger=args.trigger, started_at=started_at,
                            duration_s=(datetime.now(UTC) - started_at).total_seconds(),
                            reached=False, stopped_after_ttl=0,
                            error=clean_text(f"{type(exc).__name__}: {exc}", 200))
    print(result.model_dump_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
