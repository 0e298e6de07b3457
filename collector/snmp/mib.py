"""UNHINDERED-MIB as the collector reads it: OIDs and enumerations looked up by name in the
module compiled at build time into unhindered/snmp/mibs/ (the MIB text is the one place the
enterprise number is set), and DateAndTime decoding (unhindered.snmp.values encodes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import cache

from pysnmp.smi.builder import MibBuilder

from unhindered.snmp import mibs

Oid = tuple[int, ...]


@cache
def _builder() -> MibBuilder:
    builder = MibBuilder()
    mibs.add_to(builder)
    return builder


def symbol(name: str):
    return _builder().import_symbols(mibs.MODULE, name)[0]


@cache
def oid(name: str) -> Oid:
    return tuple(symbol(name).name)


@cache
def names(name: str) -> dict[int, str]:
    """number -> label of an enumerated object (unhCheckKind, unhCheckState ...)."""
    return {int(v): k for k, v in symbol(name).syntax.namedValues.items()}


@cache
def notification_names() -> dict[Oid, str]:
    return {oid(n): n for n in ("checkDown", "checkUp", "accessLost", "accessRestored")}


@cache
def notification_objects(name: str) -> tuple[str, ...]:
    return tuple(obj for _module, obj in symbol(name).objects)


def date_and_time(octets: bytes) -> datetime:
    """SNMPv2-TC DateAndTime (8 octets: local time, taken as UTC; 11: with the offset)."""
    if len(octets) not in (8, 11):
        raise ValueError(f"DateAndTime has 8 or 11 octets, not {len(octets)}")
    year = int.from_bytes(octets[0:2], "big")
    month, day, hour, minute, second, deci = octets[2:8]
    zone = UTC
    if len(octets) == 11:
        sign, hours, minutes = chr(octets[8]), octets[9], octets[10]
        if sign not in "+-" or hours > 13 or minutes > 59:
            raise ValueError("DateAndTime has a bad UTC offset")
        offset = timedelta(hours=hours, minutes=minutes)
        zone = timezone(offset if sign == "+" else -offset)
    if deci > 9:
        raise ValueError("DateAndTime deci-seconds over 9")
    return datetime(year, month, day, hour, minute, second, deci * 100_000,
                    tzinfo=zone).astimezone(UTC)
