#!/usr/bin/env python3
"""Authoritative DNS responder for one small test zone, over UDP and TCP (dnspython).

Runs inside the lab's `net` namespace, bound to lab target addresses only:

    dns_responder.py --zone zone.json --listen 198.19.0.1 --listen fd00:19::1 [--port 53]

zone.json (owner names relative to `origin`, "@" for the origin itself; rdata in zone-file
presentation format):

    {"origin": "lab.test.",
     "records": {"www": {"A": ["198.19.0.5"], "TXT": ["\\"hello lab\\""]}},
     "servfail": ["broken"],
     "malformed": ["garbled"],
     "delays": {"slow": 3.0}}

Answers, all with the question echoed:
- a name in the zone: its records of the asked type (NOERROR; empty when it has none);
- a `servfail` name: SERVFAIL;
- a `malformed` name: a header promising one answer record that is not there;
- any other name in the zone: NXDOMAIN; a name outside the zone: REFUSED;
- a name in `delays`: its answer, that many seconds late (other queries go on meanwhile).
Over UDP an answer larger than the client allows (512 bytes without EDNS, its EDNS
payload otherwise) is replaced by an empty one with the TC bit, so the client must retry
over TCP. Prints "ready" once every socket is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60
TCP_IDLE_S = 5.0
NO_EDNS_LIMIT = 512


class Zone:
    def __init__(self, spec: dict) -> None:
        self.origin = dns.name.from_text(spec["origin"])
        self.rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self.names: set[dns.name.Name] = set()
        for owner, by_type in spec.get("records", {}).items():
            name = self._name(owner)
            for rdtype, values in by_type.items():
                self.rrsets[(name, dns.rdatatype.from_text(rdtype))] = dns.rrset.from_text_list(
                    name, TTL, dns.rdataclass.IN, rdtype, values, origin=self.origin,
                    relativize=False,
                )
            # Empty non-terminals exist too: they answer NOERROR without records.
            while name != self.origin and name.is_subdomain(self.origin):
                self.names.add(name)
                name = name.parent()
        self.names.add(self.origin)
        self.servfail = {self._name(n) for n in spec.get("servfail", [])}
        self.malformed = {self._name(n) for n in spec.get("malformed", [])}
        self.delays = {self._name(n): float(s) for n, s in spec.get("delays", {}).items()}

    def _name(self, owner: str) -> dns.name.Name:
        return self.origin if owner == "@" else dns.name.from_text(owner, self.origin)

    def respond(self, wire: bytes, udp: bool) -> tuple[bytes | None, float]:
        """The answer to one query and how long to hold it back; None: stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, 0.0  # not a DNS query: nothing sensible to answer
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire(), 0.0
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire(), 0.0
        question = query.question[0]
        name = question.name
        delay = self.delays.get(name, 0.0)
        if not name.is_subdomain(self.origin):
            response.set_rcode(dns.rcode.REFUSED)
        elif name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.malformed:
            return self._malformed(response), delay
        else:
            response.flags |= dns.flags.AA
            if name not in self.names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rrset = self.rrsets.get((name, question.rdtype))
                if rrset is not None:
                    response.answer.append(rrset)
        # The client's size limit is applied below, by truncating; over TCP it is 64 KiB.
        out = response.to_wire(max_size=65535)
        if udp:
            limit = max(NO_EDNS_LIMIT, query.payload) if query.edns >= 0 else NO_EDNS_LIMIT
            if len(out) > limit:
                response.answer.clear()
                response.authority.clear()
                response.flags |= dns.flags.TC
                out = response.to_wire()
        return out, delay

    @staticmethod
    def _malformed(response: dns.message.Message) -> bytes:
        response.use_edns(False)  # nothing may follow the question, not even an OPT record
        wire = response.to_wire(max_size=65535)
        return wire[:6] + struct.pack("!H", 1) + wire[8:]  # ANCOUNT 1, no record


def answer_udp(zone: Zone, sock: socket.socket, wire: bytes, peer: tuple) -> None:
    out, delay = zone.respond(wire, udp=True)
    if out is None:
        return
    time.sleep(delay)
    try:
        sock.sendto(out, peer)
    except OSError as exc:
        print(f"dns_responder: sendto {peer}: {exc}", file=sys.stderr)


def serve_udp(zone: Zone, sock: socket.socket) -> None:
    while True:
        try:
            wire, peer = sock.recvfrom(65535)
        except OSError as exc:
            print(f"dns_responder: recvfrom: {exc}", file=sys.stderr)
            continue
        # A thread per query, so a delayed answer does not hold the others back.
        threading.Thread(target=answer_udp, args=(zone, sock, wire, peer), daemon=True).start()


def recv_exactly(conn: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def handle_tcp(zone: Zone, conn: socket.socket) -> None:
    with conn:
        conn.settimeout(TCP_IDLE_S)
        try:
            while True:  # several queries may share a connection (RFC 7766)
                head = recv_exactly(conn, 2)
                if head is None:
                    return
                wire = recv_exactly(conn, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                out, delay = zone.respond(wire, udp=False)
                if out is None:
                    return
                time.sleep(delay)
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return


def serve_tcp(zone: Zone, listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            print(f"dns_responder: accept: {exc}", file=sys.stderr)
            time.sleep(0.1)
            continue
        threading.Thread(target=handle_tcp, args=(zone, conn), daemon=True).start()


def bind(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", type=Path, required=True, help="the zone, as JSON")
    parser.add_argument("--listen", action="append", required=True, metavar="IP",
                        help="an IP literal to serve on (repeatable); names are refused")
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)

    zone = Zone(json.loads(args.zone.read_text()))
    threads = []
    for address in args.listen:
        udp = bind(address, args.port, socket.SOCK_DGRAM)
        tcp = bind(address, args.port, socket.SOCK_STREAM)
        threads.append(threading.Thread(target=serve_udp, args=(zone, udp), daemon=True))
        threads.append(threading.Thread(target=serve_tcp, args=(zone, tcp), daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
