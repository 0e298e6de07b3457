"""ICMP echo rounds: N requests per round, loss and RTT statistics.

All ICMP checks of a probe share one socket per address family and one sequence space
(like fping), so replies are matched by sequence number and concurrent rounds never
steal each other's answers. Receive times come from the kernel (SO_TIMESTAMPNS) and send
times from the same realtime clock just before sendto.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import statistics
import struct
import time
import weakref
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from probes.checks.base import CheckBase, CheckOutcome, ResolveError, resolve
from probes.measurement import FailureReason, IcmpFigures

log = logging.getLogger(__name__)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; Python lacks the name
_TIMESPEC = struct.Struct("@qq")
_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_COOKIE = b"unhindered"

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
# ICMP errors that quote our request: destination unreachable, time exceeded.
ERROR_TYPES = {4: {3: "destination unreachable", 11: "time exceeded"},
               6: {1: "destination unreachable", 3: "time exceeded"}}


class IcmpCheck(CheckBase):
    kind: Literal["icmp"]
    count: int = Field(5, ge=1, le=100, description="echo requests per round")
    packet_interval_s: float = Field(
        0.5, ge=0.01, le=10, description="seconds between the requests of one round"
    )
    payload_bytes: int = Field(56, ge=16, le=1400)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class _Pending:
    address: str
    sent_ns: int
    future: asyncio.Future[int | str]  # receive time in ns, or an ICMP error text
    replies: int = 0


@dataclass
class _Round:
    duplicates: int = 0
    pending: list[_Pending] = field(default_factory=list)


class IcmpSocket:
    """One socket of one family, shared by every round the probe runs."""

    def __init__(self, version: Literal[4, 6]) -> None:
        self.version = version
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        proto = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
        try:
            self.sock = socket.socket(family, socket.SOCK_RAW, proto)
            self.mode = "raw"
        except PermissionError:
            try:
                self.sock = socket.socket(family, socket.SOCK_DGRAM, proto)
            except PermissionError as exc:
                raise PermissionError(
                    "ICMP needs root or CAP_NET_RAW (raw socket), or "
                    "net.ipv4.ping_group_range covering this process's group "
                    f"(gid {os.getgid()}) for the unprivileged datagram socket"
                ) from exc
            self.mode = "datagram"
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # The kernel rewrites the identifier of datagram sockets; raw sockets see every
        # ICMP packet of the host, so ours must be random to tell them apart.
        self.identifier = random.getrandbits(16)
        self._next_seq = random.getrandbits(16)
        self._pending: dict[int, tuple[_Pending, _Round]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        log.info("ICMPv%d socket opened in %s mode", version, self.mode)

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _allocate_seq(self) -> int:
        for _ in range(65_536):
            seq = self._next_seq
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            if seq not in self._pending:
                return seq
        raise RuntimeError("all 65,536 ICMP sequence numbers are in flight")

    def send(self, rnd: _Round, address: str, payload_bytes: int) -> None:
        seq = self._allocate_seq()
        payload = (_COOKIE + os.urandom(payload_bytes))[:payload_bytes]
        header = _ECHO.pack(ECHO_REQUEST[self.version], 0, 0, self.identifier, seq)
        packet = header + payload
        if self.version == 4:  # the kernel computes ICMPv6 checksums itself
            packet = _ECHO.pack(8, 0, _checksum(packet), self.identifier, seq) + payload
        pending = _Pending(address, 0, self._loop.create_future())
        self._pending[seq] = (pending, rnd)
        rnd.pending.append(pending)
        pending.sent_ns = time.time_ns()
        try:
            self.sock.sendto(packet, (address, 0))
        except OSError as exc:
            pending.future.set_result(f"send failed: {exc.strerror or exc}")

    def release(self, rnd: _Round) -> None:
        for seq in [s for s, (_, r) in self._pending.items() if r is rnd]:
            del self._pending[seq]

    def _on_readable(self) -> None:
        while True:
            try:
                data, ancdata, _flags, source = self.sock.recvmsg(65_535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("ICMPv%d receive failed: %s", self.version, exc)
                return
            received_ns = time.time_ns()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    received_ns = sec * 1_000_000_000 + nsec
            self._dispatch(data, source[0], received_ns)

    def _dispatch(self, data: bytes, source: str, received_ns: int) -> None:
        if self.version == 4 and self.mode == "raw":
            data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets include the IP header
        if len(data) < _ECHO.size:
            return
        icmp_type, _code, _sum, identifier, seq = _ECHO.unpack_from(data)
        if icmp_type == ECHO_REPLY[self.version]:
            self._on_reply(identifier, seq, source, received_ns)
        elif icmp_type in ERROR_TYPES[self.version]:
            self._on_error(data, source, ERROR_TYPES[self.version][icmp_type])

    def _on_reply(self, identifier: int, seq: int, source: str, received_ns: int) -> None:
        if self.mode == "raw" and identifier != self.identifier:
            return
        entry = self._pending.get(seq)
        if entry is None:
            return
        pending, rnd = entry
        if ipaddress.ip_address(source) != ipaddress.ip_address(pending.address):
            return
        pending.replies += 1
        if pending.future.done():
            rnd.duplicates += 1
        else:
            pending.future.set_result(received_ns)

    def _on_error(self, data: bytes, source: str, text: str) -> None:
        # The error quotes our request: its IP header, then its first 8 bytes.
        quoted = data[8:]
        if self.version == 4:
            if len(quoted) < 20:
                return
            quoted = quoted[(quoted[0] & 0x0F) * 4 :]
        else:
            quoted = quoted[40:]
        if len(quoted) < _ECHO.size:
            return
        icmp_type, _code, _sum, identifier, seq = _ECHO.unpack_from(quoted)
        if icmp_type != ECHO_REQUEST[self.version]:
            return
        if self.mode == "raw" and identifier != self.identifier:
            return
        entry = self._pending.get(seq)
        if entry is not None and not entry[0].future.done():
            entry[0].future.set_result(f"{text} from {source}")


_sockets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, IcmpSocket]] = (
    weakref.WeakKeyDictionary()
)


def icmp_socket(version: Literal[4, 6]) -> IcmpSocket:
    """The shared socket of this event loop for this family, opened on first use."""
    per_loop = _sockets.setdefault(asyncio.get_running_loop(), {})
    if version not in per_loop:
        per_loop[version] = IcmpSocket(version)
    return per_loop[version]


def socket_modes() -> dict[int, str]:
    """Which kind of socket each family uses in this loop ({} before the first round)."""
    loop = asyncio.get_running_loop()
    return {v: s.mode for v, s in _sockets.get(loop, {}).items()}


def no_figures() -> IcmpFigures:
    return IcmpFigures(sent=0, received=0, loss_ratio=1.0)


async def run(check: IcmpCheck) -> CheckOutcome:
    try:
        address = await resolve(check.target, check.ip_version)
    except ResolveError as exc:
        return CheckOutcome(
            ok=False, reason=FailureReason.DNS, detail=str(exc),
            figures=no_figures(),
        )
    sock = icmp_socket(address.version)
    rnd = _Round()
    try:
        for i in range(check.count):
            if i:
                await asyncio.sleep(check.packet_interval_s)
            sock.send(rnd, str(address), check.payload_bytes)
        # Each request gets timeout_s from its own send time; the last one bounds the wait.
        await asyncio.wait([p.future for p in rnd.pending], timeout=check.timeout_s)
    finally:
        sock.release(rnd)
    return _outcome(check, address.version, rnd)


def _outcome(check: IcmpCheck, version: Literal[4, 6], rnd: _Round) -> CheckOutcome:
    samples: list[float] = []
    errors: list[str] = []
    for pending in rnd.pending:
        if not pending.future.done():
            continue
        result = pending.future.result()
        if isinstance(result, str):
            errors.append(result)
            continue
        rtt = (result - pending.sent_ns) / 1e9
        if 0 <= rtt <= check.timeout_s:  # a late or clock-jumped reply counts as lost
            samples.append(rtt)
    samples.sort()
    sent = len(rnd.pending)
    figures = IcmpFigures(
        sent=sent,
        received=len(samples),
        duplicates=rnd.duplicates,
        loss_ratio=(sent - len(samples)) / sent,
        rtt_min_s=samples[0] if samples else None,
        rtt_median_s=statistics.median(samples) if samples else None,
        rtt_mean_s=statistics.fmean(samples) if samples else None,
        rtt_max_s=samples[-1] if samples else None,
        rtt_stddev_s=statistics.pstdev(samples) if samples else None,
        samples_s=samples,
    )
    if samples:
        return CheckOutcome(ok=True, ip_version=version, figures=figures)
    if errors:
        return CheckOutcome(
            ok=False, reason=FailureReason.UNREACHABLE, detail=errors[0],
            ip_version=version, figures=figures,
        )
    return CheckOutcome(
        ok=False, reason=FailureReason.TIMEOUT,
        detail=f"no reply to {sent} echo requests within {check.timeout_s} s",
        ip_version=version, figures=figures,
    )
