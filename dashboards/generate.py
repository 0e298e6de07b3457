"""Writes the dashboards as Grafana JSON: `python -m dashboards.generate` (into this
directory), `--check` to fail when the committed JSON differs from what the code builds.

The JSON is committed so that provisioning and `unhindered-collector dashboards push`
need neither this code nor grafana-foundation-sdk; a test regenerates it and compares, so
the two never drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def dashboards() -> dict[str, dict]:
    """File name -> dashboard JSON object, for every dashboard."""
    from dashboards import mission, overview, uptime
    from dashboards.common import to_dict

    return {f"{module.__name__.rsplit('.', 1)[1]}.json": to_dict(module.build())
            for module in (overview, mission, uptime)}


def render(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file differs from the code")
    args = parser.parse_args(argv)
    stale = []
    for name, dashboard in dashboards().items():
        path = args.out / name
        text = render(dashboard)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m dashboards.generate",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
