"""Driving net-snmp's command-line tools at the collector, with OIDs looked up by name in
the compiled UNHINDERED-MIB (the enterprise number lives in the MIB only)."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

from collector.snmp import mib
from tests.support import require_program
from unhindered.snmp.values import date_and_time


def dotted(name: str, *instance: int) -> str:
    return ".".join(str(n) for n in (*mib.oid(name), *instance))


def check_varbinds(probe_id: str, mission: str, check: str, state: int, reason: str,
                   changed: datetime, index: int = 1) -> list[str]:
    """The objects of checkDown / checkUp as snmptrap arguments (OID TYPE VALUE)."""
    return [
        dotted("unhProbeId", 0), "s", probe_id,
        dotted("unhProbeMission", 0), "s", mission,
        dotted("unhCheckName", index), "s", check,
        dotted("unhCheckKind", index), "i", "1",
        dotted("unhCheckTarget", index), "s", "198.19.0.1",
        dotted("unhCheckState", index), "i", str(state),
        dotted("unhCheckFailureReason", index), "s", reason,
        dotted("unhCheckLastChange", index), "x", date_and_time(changed).hex(),
    ]


def v2c(community: str) -> list[str]:
    return ["-v2c", "-c", community]


async def send(tool: str, security: list[str], port: int, notification: str,
               varbinds: list[str], *extra: str) -> tuple[int, str]:
    """Runs snmptrap or snmpinform (at most 2 tries, 1 s apart); (exit status, stderr)."""
    program = require_program(tool, "snmp")
    process = await asyncio.create_subprocess_exec(
        program, *security, "-r", "1", "-t", "1", *extra, f"udp:127.0.0.1:{port}", "",
        dotted(notification), *varbinds,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _out, err = await process.communicate()
    return process.returncode, err.decode()


ROUTER_COMMUNITY = "router-secret"
ROUTER_USER = "routerv3"
ROUTER_AUTH_KEY = "router-auth-passphrase"
ROUTER_PRIV_KEY = "router-priv-passphrase"


def snmpd_argv(workdir: Path, listen: list[str], allowed: str = "127.0.0.0/8") -> list[str]:
    """A net-snmp snmpd in the foreground that reads only the config written here (-C):
    v2c community ROUTER_COMMUNITY from `allowed`, v3 user ROUTER_USER authPriv
    (SHA-256, AES-128), read-only; listening on `listen` (["udp:ADDRESS:PORT", ...]).
    Its persistent state goes to `workdir` (SNMP_PERSISTENT_DIR, see snmpd_env)."""
    require_program("snmpd", "snmpd")
    conf = workdir / "snmpd.conf"
    conf.write_text(
        f"rocommunity {ROUTER_COMMUNITY} {allowed}\n"
        f"createUser {ROUTER_USER} SHA-256 {ROUTER_AUTH_KEY} AES {ROUTER_PRIV_KEY}\n"
        f"rouser {ROUTER_USER} priv\n"
        "dontLogTCPWrappersConnects yes\n")
    return ["snmpd", "-f", "-Lf", str(workdir / "snmpd.log"), "-C", "-c", str(conf),
            "-p", str(workdir / "snmpd.pid"), "-M", "/dev/null", "-m", "", ",".join(listen)]


def snmpd_env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "SNMP_PERSISTENT_DIR": str(workdir), "MIBS": ""}
