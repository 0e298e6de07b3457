"""net-snmp as the judge of the probe's SNMP side: command arguments with the shipped MIBs,
a real snmptrapd for notifications, and the probe's expected MIB values computed from its
outbox (independently of probes/snmp/values.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.support import require_program, wait_for

ROOT = Path(__file__).resolve().parents[2]
MIB_ARGS = ["-M", f"{ROOT / 'mibs'}:{ROOT / 'mibs' / 'ietf'}", "-m", "UNHINDERED-MIB:SNMPv2-MIB"]
# Short names, name = value, enums and TimeTicks as numbers, no UNITS.
PLAIN = ["-OsQetU"]
USER, AUTH_KEY, PRIV_KEY = "monitor", "auth-pass-phrase", "priv-pass-phrase"
COMMUNITY = "lab-community-7"


def oid_of(name: str) -> tuple[int, ...]:
    """An UNHINDERED-MIB object's OID, by name from the compiled MIB (never hard-coded)."""
    from pysnmp.smi.builder import MibBuilder

    from unhindered.snmp import mibs

    builder = MibBuilder()
    mibs.add_to(builder)
    (symbol,) = builder.import_symbols("UNHINDERED-MIB", name)
    return tuple(symbol.getName())


def program(name: str) -> str:
    package = {"snmptrapd": "snmptrapd", "smilint": "smitools"}.get(name, "snmp")
    return require_program(name, package)


def v3(user: str = USER, auth: str = AUTH_KEY, priv: str = PRIV_KEY) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user, "-a", "SHA-256", "-A", auth, "-x", "AES",
            "-X", priv]


def parse_walk(text: str) -> dict[str, str]:
    """`-OsQ` lines (`name.index = value`) into a dict; strings lose their quotes."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        # A walk that reaches the end of the agent's view says so on its last line.
        if sep and not value.startswith("No more variables left"):
            values[name.strip()] = value.strip().strip('"')
    return values


def date_and_time(at: datetime) -> str:
    """How net-snmp shows a DateAndTime in UTC (its DISPLAY-HINT)."""
    at = at.astimezone(UTC)
    return (f"{at.year}-{at.month}-{at.day},{at.hour}:{at.minute}:{at.second}."
            f"{at.microsecond // 100_000},+0:0")


def _micro(seconds: float | None) -> str:
    return str(0 if seconds is None else round(seconds * 1_000_000))


def expected_row(result: dict) -> dict[str, str]:
    """The check table columns one outbox result stands for (docs/snmp.md)."""
    f = result["figures"]
    if result["kind"] == "icmp":
        rtts = f["rtt_median_s"], f["rtt_min_s"], f["rtt_max_s"]
        loss, jitter = f["loss_ratio"], f["jitter_s"]
    else:
        one = {"tcp": "connect_s", "http": "first_byte_s", "dns": "query_s"}[result["kind"]]
        rtts = (f[one],) * 3
        loss, jitter = (0 if result["ok"] else 1), None
    return {
        "unhCheckName": result["check_id"],
        "unhCheckKind": str({"icmp": 1, "tcp": 2, "http": 3, "dns": 4}[result["kind"]]),
        "unhCheckTarget": result["target"],
        "unhCheckRttMedian": _micro(rtts[0]), "unhCheckRttMin": _micro(rtts[1]),
        "unhCheckRttMax": _micro(rtts[2]), "unhCheckLoss": str(round(loss * 1000)),
        "unhCheckJitter": _micro(jitter),
        "unhCheckFailureReason": result["reason"] or "",
        "unhCheckLastRound": date_and_time(datetime.fromisoformat(result["started_at"])),
        "unhCheckGroup": result["group"],
        "unhCheckLastSeq": str(result["seq"]),
        "unhCheckOk": "1" if result["ok"] else "2",
    }


def outbox_result(outbox: Path, seq: int) -> dict:
    db = sqlite3.connect(outbox)
    try:
        (body,) = db.execute("SELECT body FROM outbox WHERE seq = ?", (seq,)).fetchone()
    finally:
        db.close()
    return {**json.loads(body), "seq": seq}


@dataclass
class TrapReceiver:
    process: subprocess.Popen
    log: Path

    def received(self) -> str:
        return self.log.read_text(errors="replace")


def start_snmptrapd(popen: Callable[..., subprocess.Popen], workdir: Path, listen: str
                    ) -> TrapReceiver:
    """A real snmptrapd on `listen` (e.g. 198.18.0.2:16162), knowing the v3 user (informs
    need no engine ID) and decoding with the shipped MIBs; it logs to a file."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "snmptrapd.conf"
    conf.write_text(f"createUser {USER} SHA-256 {AUTH_KEY} AES {PRIV_KEY}\n"
                    f"authUser log {USER}\n"
                    f"authCommunity log {COMMUNITY}\n")
    log = workdir / "snmptrapd.log"
    process = popen(
        # -n: no reverse DNS lookup of senders (in a lab namespace it waits 5 s for a
        # resolver it cannot reach, and a late answer to an inform is a lost answer).
        ["env", f"SNMP_PERSISTENT_DIR={workdir / 'persist'}", program("snmptrapd"), "-f",
         "-n", "-C", "-c", str(conf), "-Lf", str(log), *MIB_ARGS, f"udp:{listen}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for(lambda: log.exists() and "NET-SNMP version" in log.read_text(), 15,
             "snmptrapd to start")
    return TrapReceiver(process, log)
