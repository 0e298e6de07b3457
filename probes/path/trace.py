"""Records the path to one address with scapy, Paris-traceroute style (docs/path.md).

Every probe of a recording belongs to one flow: the fields a per-flow load balancer
hashes (addresses, protocol, ports; for ICMP the type, code and checksum) stay constant,
so the probes follow one path instead of a mix of several. A probe says which TTL it was
sent with in a field the balancers leave alone and the answer quotes back: the ICMP
sequence number (the checksum kept constant by a compensating payload word), the TCP
sequence number, the IPv4 identification for UDP (an IPv4 router quotes only 8 bytes of
the UDP header), and the DNS id of the query a UDP probe carries (IPv6 routers quote it;
a resolver answers it).

TTLs go out a window at a time (8 at once, so a target a few hops away is not sent 30
probes it answers all of); the next window follows as soon as the current one answered,
and the recording ends at the target, at an unreachable, or after GAP silent TTLs past
the last that answered (Paris traceroute's "max missing"). Then the TTLs still silent up
to there are tried once more. A cut path costs about two waits (`wait_s`); a path that
answers costs a few RTTs.

Imported only by `python -m probes.path`, never by the probe's steady process: the
subprocess peaks at about 64 MiB and takes 0.6 s to import scapy (docs/path.md).
"""

from __future__ import annotations

import ipaddress
import secrets
import select
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scapy.config import conf
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Packet, Raw
from scapy.supersocket import L3RawSocket

from unhindered.path import MAX_PATH_HOPS, PathHop, PathMethod, PathRecord, Trigger

try:  # where scapy keeps it moved between releases
    from scapy.supersocket import L3RawSocket6
except ImportError:  # pragma: no cover
    from scapy.layers.inet6 import L3RawSocket6  # type: ignore[no-redef]

# ICMP types (RFC 792, RFC 4443).
V4_ECHO_REPLY, V4_UNREACHABLE, V4_TIME_EXCEEDED = 0, 3, 11
V6_UNREACHABLE, V6_TIME_EXCEEDED, V6_ECHO_REPLY = 1, 3, 129
PROTO = {"icmp": (1, 58), "udp": (17, 17), "tcp": (6, 6)}  # (IPv4, IPv6) next header
WINDOW = 8  # TTLs in flight at once
GAP = 5  # silent TTLs past the last that answered before the path counts as stopped


@dataclass
class _Answer:
    ttl: int
    address: str
    rtt_s: float
    final: bool  # the target answered, or something said it cannot be reached


@dataclass
class _Recording:
    target: str
    version: int
    method: PathMethod
    port: int | None
    source: str
    sport: int
    flow_id: int = field(default_factory=lambda: secrets.randbelow(0xFFFF) + 1)
    base: int = field(default_factory=lambda: secrets.randbits(32) & 0xFFFF0000)
    sent_at: dict[int, float] = field(default_factory=dict)  # key -> wall time sent
    answers: dict[int, _Answer] = field(default_factory=dict)  # TTL -> first answer
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0

    # A probe's key is attempt * MAX_PATH_HOPS + TTL: unique within the recording and < 256.
    @staticmethod
    def ttl_of(key: int) -> int:
        return (key - 1) % MAX_PATH_HOPS + 1

    def packet(self, ttl: int, key: int) -> Packet:
        ip: Packet
        if self.version == 4:
            # IPv4 id: the key too, for UDP, whose own fields an 8-byte quote leaves out.
            ip = IP(src=self.source, dst=self.target, ttl=ttl,
                    id=((self.base >> 16) + key) & 0xFFFF)
        else:
            ip = IPv6(src=self.source, dst=self.target, hlim=ttl)
        if self.method == "icmp":
            # seq + word == 0xFFFF whatever the seq: the checksum stays constant.
            word = (0xFFFF - key).to_bytes(2, "big")
            echo = ICMP(type=8, id=self.flow_id, seq=key) if self.version == 4 else \
                ICMPv6EchoRequest(id=self.flow_id, seq=key)
            return ip / echo / Raw(word)
        assert self.port is not None
        if self.method == "tcp":
            return ip / TCP(sport=self.sport, dport=self.port, flags="S",
                            seq=(self.base + key) & 0xFFFFFFFF, window=1024)
        query = DNS(id=((self.base >> 16) + key) & 0xFFFF, rd=1, qd=DNSQR(qname=".", qtype="NS"))
        return ip / UDP(sport=self.sport, dport=self.port) / query

    def _key_of_probe(self, quoted: bytes) -> int | None:
        """The key of one of our probes, as quoted back in an ICMP error; None if not ours.
        Read from the bytes: the quote may stop 8 bytes into the transport header, where a
        dissector gives up."""
        if self.version == 4:
            if len(quoted) < 20:
                return None
            header = (quoted[0] & 0x0F) * 4
            proto, dst, ip_id = quoted[9], quoted[16:20], quoted[4:6]
        else:
            if len(quoted) < 40:
                return None
            header, proto, dst, ip_id = 40, quoted[6], quoted[24:40], b""
        if dst != ipaddress.ip_address(self.target).packed or proto != PROTO[self.method][
                self.version == 6]:
            return None
        t = quoted[header:]
        if len(t) < 8:
            return None
        if self.method == "icmp":
            ident, seq = int.from_bytes(t[4:6], "big"), int.from_bytes(t[6:8], "big")
            return seq if ident == self.flow_id else None
        if int.from_bytes(t[0:2], "big") != self.sport:
            return None
        if self.method == "tcp":
            return (int.from_bytes(t[4:8], "big") - self.base) & 0xFFFFFFFF
        if self.version == 4:  # an IPv4 router may quote no more than the UDP header
            marker = ip_id
        elif len(t) >= 10:
            marker = t[8:10]  # the DNS id (RFC 4443 routers quote as much as fits)
        else:
            return None
        return (int.from_bytes(marker, "big") - (self.base >> 16)) & 0xFFFF

    def classify(self, pkt: Packet) -> tuple[int, bool] | None:
        """(key, final) of an answer to one of our probes, None for any other packet."""
        ip_cls = IP if self.version == 4 else IPv6
        ip = pkt.getlayer(ip_cls)
        if ip is None or ip.dst != self.source:
            return None
        src = ip.src
        if self.version == 4 and ip.haslayer(ICMP):
            icmp = ip[ICMP]
            if icmp.type in (V4_TIME_EXCEEDED, V4_UNREACHABLE):
                key = self._key_of_probe(bytes(icmp.payload))
                return None if key is None else (key, icmp.type == V4_UNREACHABLE)
            if icmp.type == V4_ECHO_REPLY and self.method == "icmp" and src == self.target \
                    and icmp.id == self.flow_id:
                return icmp.seq, True
            return None
        if self.version == 6 and ip.nh == 58:
            icmp6 = ip.payload
            if icmp6.type in (V6_TIME_EXCEEDED, V6_UNREACHABLE):
                key = self._key_of_probe(bytes(icmp6.payload))
                return None if key is None else (key, icmp6.type == V6_UNREACHABLE)
            if isinstance(icmp6, ICMPv6EchoReply) and self.method == "icmp" \
                    and src == self.target and icmp6.id == self.flow_id:
                return icmp6.seq, True
            return None
        if src != self.target:
            return None
        if self.method == "tcp" and ip.haslayer(TCP):
            tcp = ip[TCP]
            if tcp.sport == self.port and tcp.dport == self.sport and tcp.flags.A:
                return (tcp.ack - 1 - self.base) & 0xFFFFFFFF, True
        if self.method == "udp" and ip.haslayer(UDP):
            udp = ip[UDP]
            payload = bytes(udp.payload)
            if udp.sport == self.port and udp.dport == self.sport and len(payload) >= 2:
                return (int.from_bytes(payload[:2], "big") - (self.base >> 16)) & 0xFFFF, True
        return None

    def note(self, pkt: Packet, wire_len: int) -> None:
        found = self.classify(pkt)
        if found is None:
            return
        key, final = found
        sent = self.sent_at.get(key)
        if sent is None:
            return
        self.packets_received += 1
        self.bytes_received += wire_len
        ttl = self.ttl_of(key)
        src = pkt.getlayer(IP if self.version == 4 else IPv6).src
        if ttl not in self.answers:
            self.answers[ttl] = _Answer(ttl, src, max(0.0, float(pkt.time) - sent),
                                        final or src == self.target)

    def final_ttl(self) -> int | None:
        finals = [ttl for ttl, answer in self.answers.items() if answer.final]
        return min(finals) if finals else None


def _source_for(target: str, version: int) -> str:
    """The address the kernel would send from: the probes must carry it (raw sockets)."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((target, 9))  # no packet: a UDP connect only picks a route
        return sock.getsockname()[0]


def _wave(rec: _Recording, sock: L3RawSocket, ttls: list[int], attempt: int,
          wait_s: float) -> None:
    for ttl in ttls:
        key = attempt * MAX_PATH_HOPS + ttl
        wire = bytes(rec.packet(ttl, key))
        rec.sent_at[key] = time.time()
        sock.outs.sendto(wire, (rec.target, 0))
        rec.packets_sent += 1
        rec.bytes_sent += len(wire)
    deadline = time.monotonic() + wait_s
    while (remaining := deadline - time.monotonic()) > 0:
        final = rec.final_ttl()
        if all(t in rec.answers for t in ttls if final is None or t <= final):
            return  # everything that can still answer did: nothing more to wait for
        _receive(rec, sock, remaining)


def _receive(rec: _Recording, sock: L3RawSocket, timeout: float) -> bool:
    """Reads one packet within `timeout`; False when none came."""
    ready, _, _ = select.select([sock.ins], [], [], max(0.0, timeout))
    if not ready:
        return False
    pkt = sock.recv()
    if pkt is not None:
        rec.note(pkt, len(pkt))
    return True


def _drain(rec: _Recording, sock: L3RawSocket, grace_s: float) -> None:
    """Counts the answers still on their way (the target answers every TTL past it), so
    that the recording's traffic figures are what it cost on the wire."""
    deadline = time.monotonic() + grace_s
    while (remaining := deadline - time.monotonic()) > 0 and _receive(rec, sock, remaining):
        pass


def record(address: str, method: PathMethod, port: int | None, *, max_hops: int = 30,
           wait_s: float = 2.0, attempts: int = 2, trigger: Trigger = "failure"
           ) -> PathRecord:
    """Records the path to `address` (an IP literal); needs CAP_NET_RAW. Raises OSError
    when the sockets cannot be opened or no route leads there."""
    if not 1 <= max_hops <= MAX_PATH_HOPS:
        raise ValueError(f"max_hops must be within 1..{MAX_PATH_HOPS}")
    if (method == "icmp") != (port is None):
        raise ValueError("icmp takes no port; udp and tcp need one")
    version = ipaddress.ip_address(address).version
    started_at, t0 = datetime.now(UTC), time.monotonic()
    source = _source_for(address, version)
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}.get(method)
    # A real socket holds the source port: no other program gets it meanwhile, and a
    # resolver's answer to a UDP probe lands there instead of drawing an unreachable.
    holder = socket.socket(family, kind) if kind is not None else None
    conf.verb = 0
    try:
        sport = 0
        if holder is not None:
            holder.bind((source, 0))
            sport = holder.getsockname()[1]
        rec = _Recording(target=address, version=version, method=method, port=port,
                         source=source, sport=sport)
        sock = L3RawSocket() if version == 4 else L3RawSocket6()
        try:
            sent_upto = 0
            while sent_upto < max_hops and rec.final_ttl() is None:
                window = list(range(sent_upto + 1, min(sent_upto + WINDOW, max_hops) + 1))
                _wave(rec, sock, window, 0, wait_s)
                sent_upto = window[-1]
                if sent_upto - max(rec.answers, default=0) >= GAP:
                    break
            for attempt in range(1, attempts):
                last = max(rec.answers, default=0)
                upto = rec.final_ttl() or min(sent_upto, last + 2)
                silent = [t for t in range(1, upto + 1) if t not in rec.answers]
                if not silent:
                    break
                _wave(rec, sock, silent, attempt, wait_s)
            rtts = [answer.rtt_s for answer in rec.answers.values()]
            _drain(rec, sock, min(wait_s, 0.05 + 2 * max(rtts, default=0.0)))
        finally:
            sock.close()
    finally:
        if holder is not None:
            holder.close()
    return _to_record(rec, started_at, time.monotonic() - t0, trigger)


def _to_record(rec: _Recording, started_at: datetime, duration_s: float,
               trigger: Trigger) -> PathRecord:
    final = rec.final_ttl()
    stop = final if final is not None else max(rec.answers, default=0)
    hops = [PathHop(ttl=t, address=rec.answers[t].address, rtt_s=round(rec.answers[t].rtt_s, 6))
            if t in rec.answers else PathHop(ttl=t) for t in range(1, stop + 1)]
    reached = bool(hops) and hops[-1].address == str(ipaddress.ip_address(rec.target))
    return PathRecord(
        method=rec.method, port=rec.port, address=rec.target, trigger=trigger,
        started_at=started_at, duration_s=round(duration_s, 6), hops=hops, reached=reached,
        stopped_after_ttl=stop, packets_sent=rec.packets_sent,
        packets_received=rec.packets_received, bytes_sent=rec.bytes_sent,
        bytes_received=rec.bytes_received)
