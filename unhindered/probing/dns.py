"""DNS: one query for one name to one configured resolver, over UDP, and again over TCP
when the UDP answer comes back truncated. See docs/checks-dns.md."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import sys
import time
from typing import Any, Literal

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from unhindered.checks.dns import MAX_ANSWERS, DnsCheck, canonical, normalise
from unhindered.measurement import DnsFigures, FailureReason
from unhindered.probing.base import CheckOutcome

# The EDNS payload we advertise: the DNS Flag Day 2020 size, which fits an unfragmented
# packet on practically every path. Larger answers arrive truncated and are fetched over
# TCP, which is what a modern stub resolver does too.
EDNS_PAYLOAD = 1232
# Linux values; socket has the names from Python 3.12 on.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_MAX_ANSWER_CHARS = 512  # DnsFigures' limit per answer
_MAX_DETAIL = 500


def no_figures() -> DnsFigures:
    return DnsFigures()


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _ConnectedUdp(dns.asyncbackend.DatagramSocket):
    """A UDP socket connected to the resolver, for dns.asyncquery.udp(sock=...).

    Linux reports an ICMP port unreachable only to a connected UDP socket, and host or
    network unreachable only with IP_RECVERR set; without both, a resolver that is down or
    unroutable would look like a mere timeout.
    """

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        # Not super().__init__(): its signature changed between dnspython 2.6 and 2.9.
        self.family = sock.family
        self.type = socket.SOCK_DGRAM
        self._sock = sock
        self._peer = peer

    # dnspython's interface passes timeouts; ours is the caller's asyncio.timeout().
    async def sendto(
        self, what: bytes, destination: Any, timeout: float | None  # noqa: ASYNC109
    ) -> int:
        await asyncio.get_running_loop().sock_sendall(self._sock, what)
        return len(what)

    async def recvfrom(
        self, size: int, timeout: float | None  # noqa: ASYNC109
    ) -> tuple[bytes, Any]:
        data = await asyncio.get_running_loop().sock_recv(self._sock, size)
        return data, self._peer  # connected: the kernel passes on the resolver's datagrams only

    async def close(self) -> None:
        self._sock.close()

    async def getpeername(self) -> Any:
        return self._peer

    async def getsockname(self) -> Any:
        return self._sock.getsockname()


def _connected_udp(resolver: str, port: int) -> _ConnectedUdp:
    peer = dns.inet.low_level_address_tuple((resolver, port))
    family = dns.inet.af_for_address(resolver)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if sys.platform.startswith("linux"):
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        sock.connect(peer)  # sends nothing; fails at once when there is no route
    except BaseException:
        sock.close()
        raise
    return _ConnectedUdp(sock, peer)


async def _udp(query: dns.message.Message, resolver: str, port: int) -> dns.message.Message:
    """One query over UDP; raises dns.message.Truncated when the answer has the TC bit."""
    async with _connected_udp(resolver, port) as sock:
        return await dns.asyncquery.udp(
            query, resolver, port=port, sock=sock,
            # Stub resolvers ignore octets after the message; so do we, so as not to call
            # an answer broken that every application accepts.
            ignore_trailing=True,
            raise_on_truncation=True,
        )


async def run(check: DnsCheck) -> CheckOutcome:
    address = ipaddress.ip_address(check.target)
    resolver = str(address)  # canonical text: dnspython compares the answer's source to it
    rdtype = dns.rdatatype.from_text(check.record_type)
    qname = dns.name.from_text(check.name)
    asked = f"{qname} {check.record_type}"
    query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)

    transport: Literal["udp", "tcp"] = "udp"

    def failed(reason: FailureReason, detail: str) -> CheckOutcome:
        return CheckOutcome(ok=False, reason=reason, detail=_shorten(detail, _MAX_DETAIL),
                            ip_version=address.version, figures=DnsFigures(transport=transport))

    started = time.perf_counter()
    try:
        # One deadline for the UDP query and the TCP retry together.
        async with asyncio.timeout(check.timeout_s):
            try:
                response = await _udp(query, resolver, check.port)
            except dns.message.Truncated:
                transport = "tcp"
                response = await dns.asyncquery.tcp(
                    query, resolver, port=check.port, ignore_trailing=True
                )
        query_s = time.perf_counter() - started
    except (TimeoutError, dns.exception.Timeout):
        after = " (over TCP, after a truncated UDP answer)" if transport == "tcp" else ""
        return failed(FailureReason.TIMEOUT,
                      f"no answer from {resolver} within {check.timeout_s} s{after}")
    except ConnectionRefusedError:
        return failed(FailureReason.REFUSED,
                      f"{resolver} port {check.port}/{transport} refused the query")
    except EOFError:
        return failed(FailureReason.ERROR,
                      f"{resolver} closed the TCP connection without answering")
    except OSError as exc:
        reason = FailureReason.UNREACHABLE if exc.errno in _UNREACHABLE else FailureReason.ERROR
        return failed(reason, f"{resolver}: {exc.strerror or exc}")
    except dns.exception.FormError as exc:
        return failed(FailureReason.ERROR,
                      f"malformed answer from {resolver} ({type(exc).__name__}: {exc})")
    except dns.exception.DNSException as exc:
        # E.g. an answer to another question: nothing a client could use.
        return failed(FailureReason.ERROR,
                      f"unusable answer from {resolver} ({type(exc).__name__}: {exc})")

    rcode = dns.rcode.to_text(response.rcode())
    records = [
        rdata
        for rrset in response.answer
        if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN
        for rdata in rrset
    ]
    answers = sorted(_shorten(r.to_text(), _MAX_ANSWER_CHARS) for r in records)[:MAX_ANSWERS]
    figures = DnsFigures(query_s=query_s, rcode=rcode, answers=answers, transport=transport)

    def outcome(reason: FailureReason | None = None, detail: str | None = None) -> CheckOutcome:
        return CheckOutcome(ok=reason is None, reason=reason,
                            detail=None if detail is None else _shorten(detail, _MAX_DETAIL),
                            ip_version=address.version, figures=figures)

    if rcode != "NOERROR":
        return outcome(FailureReason.DNS, f"rcode {rcode} for {asked}")
    if check.expected_answers is not None:
        expected = {normalise(rdtype, text) for text in check.expected_answers}
        got = {canonical(r) for r in records}
        if got != expected:
            half = (_MAX_DETAIL - 40) // 2
            return outcome(
                FailureReason.UNEXPECTED_ANSWER,
                f"{asked}: expected {_shorten(str(sorted(expected)), half)}, "
                f"got {_shorten(str(sorted(got)), half)}",
            )
    return outcome()
