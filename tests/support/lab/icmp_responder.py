#!/usr/bin/env python3
"""Userspace ICMP/ICMPv6 echo responder with a per-target reply delay.

Runs inside the lab's `net` namespace, where kernel echo replies are disabled, and answers
echo requests addressed to the configured target addresses only:

    icmp_responder.py --target 198.19.0.1=0.020 --target fd00:19::1=0.020 [--duplicate ADDR]

Stdlib only. Prints "ready" once both raw sockets are open.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import ipaddress
import itertools
import selectors
import socket
import struct
import sys
import threading
import time

# Not every Python build exports these names; the values are the Linux ABI.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PR_SET_TIMERSLACK = 29

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

Address = tuple[object, ...]  # a socket address as accepted by sendmsg


# Written again on purpose rather than imported from probes/: the lab must not share
# code with what it tests.
def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class ReplyScheduler(threading.Thread):
    """Sends queued replies when due.

    A dedicated thread sleeping on the monotonic clock keeps the added delay accurate to well
    under a millisecond; an event loop timer would round its wake-up to whole milliseconds.
    """

    def __init__(self) -> None:
        super().__init__(name="reply-scheduler", daemon=True)
        self._heap: list[tuple[float, int, socket.socket, bytes, list, Address]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()

    def schedule(
        self, due: float, sock: socket.socket, data: bytes, ancdata: list, dest: Address
    ) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), sock, data, ancdata, dest))
            self._cond.notify()

    def run(self) -> None:
        # The default 50 us timer slack would add to every delay; ask for 1 ns (this thread).
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                remaining = self._heap[0][0] - time.monotonic()
                if remaining > 0.001:
                    # Wakes early, or on a newly scheduled reply that may be due sooner.
                    self._cond.wait(remaining - 0.0005)
                    continue
                if remaining <= 0:
                    _, _, sock, data, ancdata, dest = heapq.heappop(self._heap)
            if remaining > 0:
                # The last < 1 ms: a plain sleep wakes more precisely than a condition wait.
                time.sleep(remaining)
                continue
            try:
                sock.sendmsg([data], ancdata, 0, dest)
            except OSError as exc:
                print(f"icmp_responder: send to {dest[0]} failed: {exc}", file=sys.stderr)


def parse_targets(specs: list[str]) -> dict[bytes, float]:
    targets: dict[bytes, float] = {}
    for spec in specs:
        addr, sep, delay = spec.rpartition("=")
        if not sep:
            raise SystemExit(f"--target must be ADDR=DELAY_S, got {spec!r}")
        targets[ipaddress.ip_address(addr).packed] = float(delay)
    return targets


def arrival(ancdata: list[tuple[int, int, bytes]]) -> float:
    """Monotonic time at which the kernel received the packet.

    Counting the delay from the kernel's receive timestamp keeps this process's own wake-up
    and parsing time out of the measured RTT.
    """
    now_mono, now_real = time.monotonic(), time.time()
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("=qq", value[:16])
            return now_mono - max(0.0, now_real - (sec + nsec / 1e9))
    return now_mono


def handle_v4(
    sock: socket.socket,
    targets: dict[bytes, float],
    duplicates: set[bytes],
    scheduler: ReplyScheduler,
) -> None:
    packet, ancdata, _, (src, _) = sock.recvmsg(65535, 256)
    now = arrival(ancdata)
    header_len = (packet[0] & 0x0F) * 4
    dst = packet[16:20]
    icmp = packet[header_len:]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO_REQUEST or icmp[1] != 0 or dst not in targets:
        return
    reply = bytearray(icmp)
    reply[0] = ICMP_ECHO_REPLY
    reply[2:4] = b"\0\0"
    reply[2:4] = struct.pack("!H", icmp_checksum(bytes(reply)))
    # IP_PKTINFO's ipi_spec_dst sets the reply's source address to the requested target.
    ancdata = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
    copies = 2 if dst in duplicates else 1
    for _ in range(copies):
        scheduler.schedule(now + targets[dst], sock, bytes(reply), ancdata, (src, 0))


def handle_v6(
    sock: socket.socket,
    targets: dict[bytes, float],
    duplicates: set[bytes],
    scheduler: ReplyScheduler,
) -> None:
    data, ancdata, _, src = sock.recvmsg(65535, 256)
    now = arrival(ancdata)
    dst = None
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
            dst = value[:16]
    if len(data) < 8 or data[0] != ICMP6_ECHO_REQUEST or data[1] != 0 or dst not in targets:
        return
    # The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.
    reply = bytes([ICMP6_ECHO_REPLY, 0, 0, 0]) + data[4:]
    send_anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, dst + struct.pack("=I", 0))]
    copies = 2 if dst in duplicates else 1
    for _ in range(copies):
        scheduler.schedule(now + targets[dst], sock, reply, send_anc, src)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", default=[], metavar="ADDR=DELAY_S")
    parser.add_argument("--duplicate", action="append", default=[], metavar="ADDR")
    args = parser.parse_args(argv)
    targets = parse_targets(args.target)
    duplicates = {ipaddress.ip_address(a).packed for a in args.duplicate}

    sock4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock6.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    for sock in (sock4, sock6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    scheduler = ReplyScheduler()
    scheduler.start()
    selector = selectors.DefaultSelector()
    selector.register(sock4, selectors.EVENT_READ, handle_v4)
    selector.register(sock6, selectors.EVENT_READ, handle_v6)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            key.data(key.fileobj, targets, duplicates, scheduler)


if __name__ == "__main__":
    main()
