"""ICMP echo rounds: N requests per round, loss, RTT statistics and jitter.

Like fping, the probe has one ICMP engine: one socket per address family and one
sequence space for every ICMP check, a global minimum gap between any two packets it
sends, and a sequence map that matches replies, counts duplicates and keeps each number
out of use for a while after its round ended, so a late reply is never mistaken for a
new one. Receive times come from the kernel (SO_TIMESTAMPNS), send times from the same
realtime clock just before sendto; without a kernel timestamp both ends use the
monotonic clock. ICMP errors (unreachable, time exceeded) that quote one of our requests
end that request at once, with the error as the failure reason.

One module of about 460 lines, on purpose: the socket, the sender thread, the sequence
map and the rounds share one sequence space and one lock, and reading them apart would
hide how a reply finds its request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import math
import os
import queue
import random
import socket
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Literal

from unhindered.checks.icmp import IcmpCheck, IcmpSettings
from unhindered.measurement import FailureReason, IcmpFigures
from unhindered.probing.base import CheckOutcome, ResolveError, resolve

log = logging.getLogger(__name__)

# Linux values that Python's socket module does not name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3

_TIMESPEC = struct.Struct("@qq")
_EXTENDED_ERR = struct.Struct("@IBBBBII")  # errno, origin, type, code, pad, info, data
_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_COOKIE = b"unhindered"

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}
# ICMP errors that quote our request: destination unreachable, time exceeded.
ERROR_TYPES = {4: {3: "destination unreachable", 11: "time exceeded"},
               6: {1: "destination unreachable", 3: "time exceeded"}}
SEQ_QUARANTINE_S = 10.0  # a sequence number is not reused sooner than this


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class _Request:
    address: str
    sent_ns: int  # realtime, comparable with kernel timestamps
    sent_mono_ns: int
    future: asyncio.Future[int | str]  # RTT in ns, or an ICMP error text
    expires_mono: float = float("inf")


@dataclass
class _Round:
    duplicates: int = 0
    requests: list[_Request] = field(default_factory=list)


@dataclass
class EngineCounters:
    sent: int = 0
    late_replies: int = 0  # replies after their round ended
    duplicates: int = 0
    errors: int = 0  # ICMP errors attributed to our requests


class IcmpSocket:
    """One socket of one family, shared by every round the probe runs."""

    def __init__(self, version: Literal[4, 6], engine: IcmpEngine) -> None:
        self.version = version
        self.engine = engine
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        proto = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
        self.sock, self.mode = self._open(family, proto, engine.settings.socket)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if self.mode == "datagram":
            # Datagram sockets get ICMP errors only through the error queue.
            level = socket.IPPROTO_IP if version == 4 else socket.IPPROTO_IPV6
            self.sock.setsockopt(level, IP_RECVERR if version == 4 else IPV6_RECVERR, 1)
        # The kernel rewrites the identifier of datagram sockets; raw sockets see every
        # ICMP packet of the host, so ours must be random to tell them apart.
        self.identifier = random.getrandbits(16)
        self._next_seq = random.getrandbits(16)
        self._requests: dict[int, tuple[_Request, _Round]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        log.info("ICMPv%d socket opened in %s mode", version, self.mode)

    @staticmethod
    def _open(family: int, proto: int, wanted: str) -> tuple[socket.socket, str]:
        if wanted in ("auto", "raw"):
            try:
                return socket.socket(family, socket.SOCK_RAW, proto), "raw"
            except PermissionError:
                if wanted == "raw":
                    raise PermissionError(
                        "icmp.socket is raw, which needs root or CAP_NET_RAW") from None
        try:
            return socket.socket(family, socket.SOCK_DGRAM, proto), "datagram"
        except PermissionError as exc:
            raise PermissionError(
                "ICMP needs root or CAP_NET_RAW (raw socket), or net.ipv4.ping_group_range "
                f"covering this process's group (gid {os.getgid()}) for the unprivileged "
                "datagram socket") from exc

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _allocate_seq(self) -> int:
        now = time.monotonic()
        for _ in range(65_536):
            seq = self._next_seq
            self._next_seq = (self._next_seq + 1) & 0xFFFF
            entry = self._requests.get(seq)
            if entry is None or entry[0].expires_mono <= now:
                return seq
        raise RuntimeError("all 65,536 ICMP sequence numbers are in use")

    def prepare(self, rnd: _Round, address: str, payload_bytes: int) -> tuple[bytes, _Request]:
        """Registers one echo request of the round (on the event loop) and builds it."""
        seq = self._allocate_seq()
        payload = (_COOKIE + os.urandom(payload_bytes))[:payload_bytes]
        checksum = 0
        if self.version == 4:  # the kernel computes ICMPv6 checksums itself
            checksum = _checksum(_ECHO.pack(8, 0, 0, self.identifier, seq) + payload)
        packet = _ECHO.pack(ECHO_REQUEST[self.version], 0, checksum, self.identifier, seq)
        request = _Request(address, 0, 0, self._loop.create_future())
        self._requests[seq] = (request, rnd)
        rnd.requests.append(request)
        return packet + payload, request

    def transmit(self, packet: bytes, request: _Request) -> str | None:
        """Sends it (on the sender thread); returns an error text if the send failed."""
        request.sent_mono_ns = time.monotonic_ns()
        request.sent_ns = time.time_ns()
        try:
            self.sock.sendto(packet, (request.address, 0))
        except OSError as exc:
            return f"send failed: {exc.strerror or exc}"
        self.engine.counters.sent += 1
        return None

    def release(self, rnd: _Round) -> None:
        """The round is over: its numbers stay reserved a while to recognise late replies."""
        expires = time.monotonic() + SEQ_QUARANTINE_S
        for request in rnd.requests:
            request.expires_mono = expires

    def _on_readable(self) -> None:
        if self.mode == "datagram":
            self._drain_error_queue()
        for _ in range(10_000):  # bounded: never spin on a socket that keeps failing
            try:
                data, ancdata, _flags, source = self.sock.recvmsg(65_535, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # A datagram socket reports a queued ICMP error once on a plain read too;
                # the error queue, read above and on the next wake-up, has the details.
                if self.mode == "datagram":
                    self._drain_error_queue()
                    continue
                return
            rtt_ns = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    rtt_ns = sec * 1_000_000_000 + nsec
            self._dispatch(data, source[0], rtt_ns, time.monotonic_ns())

    def _dispatch(self, data: bytes, source: str, kernel_ns: int | None, mono_ns: int) -> None:
        if self.version == 4 and self.mode == "raw":
            data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets include the IP header
        if len(data) < _ECHO.size:
            return
        icmp_type, _code, _sum, identifier, seq = _ECHO.unpack_from(data)
        if icmp_type == ECHO_REPLY[self.version]:
            self._on_reply(identifier, seq, source, kernel_ns, mono_ns)
        elif icmp_type in ERROR_TYPES[self.version] and self.mode == "raw":
            self._on_raw_error(data, source, ERROR_TYPES[self.version][icmp_type])

    def _on_reply(self, identifier: int, seq: int, source: str, kernel_ns: int | None,
                  mono_ns: int) -> None:
        if self.mode == "raw" and identifier != self.identifier:
            return  # another program's ping
        entry = self._requests.get(seq)
        if entry is None:
            return
        request, rnd = entry
        # The same text is the same address (the usual case, not parsed); IPv6 has
        # several spellings of one address.
        if source != request.address and (
                ipaddress.ip_address(source) != ipaddress.ip_address(request.address)):
            return
        if request.expires_mono != float("inf"):
            self.engine.counters.late_replies += 1
        elif request.future.done():
            rnd.duplicates += 1
            self.engine.counters.duplicates += 1
        elif kernel_ns is not None:
            request.future.set_result(kernel_ns - request.sent_ns)
        else:
            request.future.set_result(mono_ns - request.sent_mono_ns)

    def _on_raw_error(self, data: bytes, source: str, text: str) -> None:
        # The error quotes our request: its IP header, then at least its first 8 bytes.
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
        if icmp_type == ECHO_REQUEST[self.version] and identifier == self.identifier:
            self._fail(seq, f"{text} from {source}")

    def _drain_error_queue(self) -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65_535, 512, MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < _ECHO.size:
                continue
            seq = _ECHO.unpack_from(data)[4]  # the queued packet is our own request
            for _level, _kind, value in ancdata:
                if len(value) < _EXTENDED_ERR.size:
                    continue
                _errno, origin, icmp_type, _code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(
                    value)
                if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6):
                    continue
                text = ERROR_TYPES[self.version].get(icmp_type, f"ICMP error type {icmp_type}")
                offender = _offender(value[_EXTENDED_ERR.size :])
                self._fail(seq, f"{text} from {offender}" if offender else text)

    def _fail(self, seq: int, text: str) -> None:
        entry = self._requests.get(seq)
        if entry is not None and not entry[0].future.done():
            entry[0].future.set_result(text)
            self.engine.counters.errors += 1


def _offender(sockaddr: bytes) -> str | None:
    """The address that sent the ICMP error, from the sockaddr after sock_extended_err."""
    if len(sockaddr) >= 8 and int.from_bytes(sockaddr[:2], "little") == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, sockaddr[4:8])
    if len(sockaddr) >= 24 and int.from_bytes(sockaddr[:2], "little") == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])
    return None


class IcmpEngine:
    """Every ICMP packet of the probe goes through here, in one event loop."""

    def __init__(self, settings: IcmpSettings) -> None:
        self.settings = settings
        self.counters = EngineCounters()
        self.sockets: dict[int, IcmpSocket] = {}
        self.jitter: dict[str, float] = {}  # check id -> running RFC 3550 estimate
        self._sender = _Sender(settings.min_gap_s)

    def socket_for(self, version: Literal[4, 6]) -> IcmpSocket:
        if version not in self.sockets:
            self.sockets[version] = IcmpSocket(version, self)
        return self.sockets[version]

    async def send(self, sock: IcmpSocket, rnd: _Round, address: str, payload: int) -> None:
        """Queues one echo request and returns once it is on the wire."""
        packet, request = sock.prepare(rnd, address, payload)
        sent_now, error = self._sender.try_now(sock, packet, request)
        if not sent_now:
            loop = asyncio.get_running_loop()
            sent: asyncio.Future[str | None] = loop.create_future()
            self._sender.submit((sock, packet, request, loop, sent))
            error = await sent
        if error is not None and not request.future.done():
            request.future.set_result(error)

    def close(self) -> None:
        self._sender.stop()
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()


class _Sender(threading.Thread):
    """Puts every echo request of the probe on the wire, at least `min_gap_s` apart.

    A thread of its own, because the event loop's timers only wake in whole milliseconds:
    a 1 ms gap would become about 1.4 ms, and a 200-target sweep 40 % slower than fping.
    Here the gap is kept to within the kernel's sleep precision, and the loop is never
    blocked to get it.
    """

    def __init__(self, min_gap_s: float) -> None:
        super().__init__(name="icmp-sender", daemon=True)
        self.min_gap_s = min_gap_s
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._next_at = 0.0  # the earliest time the next packet may leave
        self.start()

    def try_now(self, sock: IcmpSocket, packet: bytes, request: _Request
                ) -> tuple[bool, str | None]:
        """Sends at once, from the caller's thread, when nothing is queued and the gap
        since the last packet is respected: the usual case, without a thread hand-off."""
        with self._lock:
            now = time.monotonic()
            if self._queued or now < self._next_at:
                return False, None
            self._next_at = now + self.min_gap_s
        return True, sock.transmit(packet, request)

    def submit(self, item: tuple) -> None:
        with self._lock:
            self._queued += 1
        self.queue.put(item)

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            sock, packet, request, loop, sent = item
            # Packets go out on a grid `min_gap_s` apart; sleeping late for one does not
            # push back all the following ones.
            with self._lock:
                planned = max(self._next_at, time.monotonic())
                self._next_at = planned + self.min_gap_s
            wait = planned - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            error = sock.transmit(packet, request)
            with self._lock:
                self._queued -= 1
            loop.call_soon_threadsafe(_resolve, sent, error)

    def stop(self) -> None:
        self.queue.put(None)


def _resolve(future: asyncio.Future, value: object) -> None:
    if not future.done():  # the round may have been cancelled meanwhile
        future.set_result(value)


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IcmpEngine] = (
    weakref.WeakKeyDictionary())


def engine(settings: IcmpSettings | None = None) -> IcmpEngine:
    """This event loop's engine; settings given before the first round take effect."""
    loop = asyncio.get_running_loop()
    current = _engines.get(loop)
    if current is None or (settings is not None and settings != current.settings
                           and not current.sockets):
        if current is not None:
            current.close()
        current = _engines[loop] = IcmpEngine(settings or IcmpSettings())
    return current


def no_figures() -> IcmpFigures:
    return IcmpFigures(sent=0, received=0, loss_ratio=1.0)


async def run(check: IcmpCheck) -> CheckOutcome:
    try:
        address = await resolve(check.target, check.ip_version)
    except ResolveError as exc:
        return CheckOutcome(ok=False, reason=FailureReason.DNS, detail=str(exc),
                            figures=no_figures())
    icmp = engine()
    sock = icmp.socket_for(address.version)
    rnd = _Round()
    try:
        for i in range(check.count):
            if i:
                await asyncio.sleep(check.packet_interval_s)
            await icmp.send(sock, rnd, str(address), check.payload_bytes)
        # Each request gets timeout_s from its own send time; the last one bounds the wait.
        await asyncio.wait([r.future for r in rnd.requests], timeout=check.timeout_s)
    finally:
        sock.release(rnd)
    return _outcome(check, address.version, rnd, icmp.jitter)


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _outcome(check: IcmpCheck, version: Literal[4, 6], rnd: _Round,
             jitter: dict[str, float]) -> CheckOutcome:
    in_order: list[float] = []  # RTTs in send order, for jitter
    errors: list[str] = []
    for request in rnd.requests:
        if not request.future.done():
            continue
        result = request.future.result()
        if isinstance(result, str):
            errors.append(result)
        elif 0 <= result / 1e9 <= check.timeout_s:  # late or clock-jumped: counts as lost
            in_order.append(result / 1e9)
    samples = sorted(in_order)
    # RFC 3550 6.4.1: J += (|D(i-1,i)| - J) / 16, where D is the difference of the transit
    # times of consecutive packets, which for echo requests is the difference of RTTs.
    estimate = jitter.get(check.id)
    for previous, current in itertools.pairwise(in_order):
        estimate = (estimate or 0.0) + (abs(current - previous) - (estimate or 0.0)) / 16
    if estimate is not None:
        jitter[check.id] = estimate
    sent = len(rnd.requests)
    mean = math.fsum(samples) / len(samples) if samples else None
    figures = IcmpFigures(
        sent=sent,
        received=len(samples),
        duplicates=rnd.duplicates,
        loss_ratio=(sent - len(samples)) / sent,
        rtt_min_s=samples[0] if samples else None,
        rtt_median_s=_median(samples) if samples else None,
        rtt_mean_s=mean,
        rtt_max_s=samples[-1] if samples else None,
        # In floats: statistics.pstdev computes in exact fractions, a tenth of a
        # single-echo round's CPU, for a difference far below a nanosecond.
        rtt_stddev_s=(math.sqrt(math.fsum((x - mean) ** 2 for x in samples) / len(samples))
                      if mean is not None else None),
        jitter_s=estimate,
        samples_s=samples,
    )
    if samples:
        return CheckOutcome(ok=True, ip_version=version, figures=figures)
    if errors:
        # Our own failure to send (no route, a local firewall) is not the target's fault
        # unless the network was unreachable.
        local = all(e.startswith("send failed") and "unreachable" not in e for e in errors)
        reason = FailureReason.ERROR if local else FailureReason.UNREACHABLE
        return CheckOutcome(ok=False, reason=reason, detail=errors[0], ip_version=version,
                            figures=figures)
    return CheckOutcome(
        ok=False, reason=FailureReason.TIMEOUT,
        detail=f"no reply to {sent} echo requests within {check.timeout_s} s",
        ip_version=version, figures=figures)
