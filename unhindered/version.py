"""The installed version, as `--version` shows it and as the probe names itself to the
collector in its User-Agent (`unhindered-probe/0.1.0 Python/3.11.7`), which the
collector keeps for `probes list`."""

from __future__ import annotations

import platform
import re
from importlib import metadata

PROBE_PRODUCT = "unhindered-probe"
_PROBE_TOKEN = re.compile(rf"\b{PROBE_PRODUCT}/([0-9A-Za-z.+_-]{{1,64}})")


def installed() -> str:
    try:
        return metadata.version("unhindered")
    except metadata.PackageNotFoundError:  # a source tree never installed
        return "unknown"


def version_line(prog: str) -> str:
    return f"{prog} {installed()} (Python {platform.python_version()})"


def probe_user_agent() -> str:
    return f"{PROBE_PRODUCT}/{installed()} Python/{platform.python_version()}"


def probe_version(user_agent: str | None) -> str | None:
    """The probe's version in a User-Agent it sent; None for any other client."""
    found = _PROBE_TOKEN.search(user_agent or "")
    return found.group(1) if found else None
