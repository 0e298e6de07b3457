"""The dns check's settings, and the form answers are compared in (canonical, normalise),
shared by whatever compares answers. Uses dnspython's parsers (names, record data) so that
a config is refused for exactly what the check could not compare; its query machinery is
the probe's (unhindered/probing/dns.py)."""

from __future__ import annotations

import ipaddress
from typing import Literal

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from pydantic import Field, ValidationInfo, field_validator

from unhindered.checks.base import CheckBase

RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV"]
# Record types whose rdata holds domain names: compared case-insensitively.
NAME_TYPES = {
    dns.rdatatype.CNAME, dns.rdatatype.MX, dns.rdatatype.NS, dns.rdatatype.PTR,
    dns.rdatatype.SRV, dns.rdatatype.SOA,
}
MAX_ANSWERS = 100  # DnsFigures' limit


class DnsCheck(CheckBase):
    kind: Literal["dns"] = Field(description="a DNS query to a resolver")
    # target (from CheckBase): the resolver's IP address, never a name.
    name: str = Field(min_length=1, max_length=253, description="the name to look up")
    record_type: RecordType = Field("A", description="the record type asked for")
    port: int = Field(53, ge=1, le=65_535, description="the resolver's port")
    expected_answers: list[str] | None = Field(
        None, max_length=MAX_ANSWERS,
        description="the exact answer set required; [] requires an empty answer",
    )

    @field_validator("target")
    @classmethod
    def _resolver_is_an_address(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            # Looking the resolver up would need a working resolver: the very thing checked.
            raise ValueError(
                "the resolver of a dns check must be an IP address, not a host name"
            ) from None
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError("a resolver address with a zone index (%...) is not supported")
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            dns.name.from_text(value)
        except dns.exception.DNSException as exc:
            raise ValueError(f"not a valid DNS name: {exc}") from None
        return value

    @field_validator("ip_version")
    @classmethod
    def _family_of_resolver(cls, value: int | None, info: ValidationInfo) -> int | None:
        target = info.data.get("target")  # absent when the target itself was refused
        if value is not None and target is not None and (
            ipaddress.ip_address(target).version != value
        ):
            raise ValueError(f"the resolver {target} is not an IPv{value} address")
        return value

    @field_validator("expected_answers")
    @classmethod
    def _answers_parse(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        record_type = info.data.get("record_type")
        if value is None or record_type is None:
            return value
        rdtype = dns.rdatatype.from_text(record_type)
        for answer in value:
            try:
                normalise(rdtype, answer)
            except (dns.exception.DNSException, ValueError) as exc:
                raise ValueError(
                    f"{answer!r} is not a valid {record_type} record: {exc}"
                ) from None
        return value


def canonical(rdata: dns.rdata.Rdata) -> str:
    """The form answers are compared in. TXT: the record's strings joined, as SPF and DKIM
    read them. Names: lower case, absolute (so a trailing dot never matters)."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", errors="backslashreplace")
    text = rdata.to_text()
    return text.lower() if rdata.rdtype in NAME_TYPES else text


def normalise(rdtype: dns.rdatatype.RdataType, text: str) -> str:
    """An expected answer as written in the config, in the form of canonical()."""
    if rdtype == dns.rdatatype.TXT and not text.startswith('"'):
        return text  # a bare TXT value is one string, spaces included
    rdata = dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
    )
    return canonical(rdata)
