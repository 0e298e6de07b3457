"""The path record's rules (unhindered/path.py), the recorder's probes (Paris style: one
flow, the TTL told by fields the flow hash leaves alone) and the probe's side of it:
which method for which check, when a recording runs, how it reaches the wire."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from probes.path.runner import PathRecorder, method_for
from probes.path.settings import PathSettings
from unhindered.checks import DnsCheck, HttpCheck, IcmpCheck, TcpCheck
from unhindered.measurement import Batch, FailureReason, TcpFigures, TcpMeasurement
from unhindered.path import MAX_PATH_HOPS, PathHop, PathRecord

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def path(**changes) -> PathRecord:
    fields = dict(
        method="tcp", port=443, address="198.19.0.1", started_at=NOW, duration_s=1.5,
        hops=[PathHop(ttl=1, address="198.19.1.17", rtt_s=0.001), PathHop(ttl=2),
              PathHop(ttl=3, address="198.19.0.1", rtt_s=0.003)],
        reached=True, stopped_after_ttl=3)
    fields.update(changes)
    return PathRecord(**fields)


def test_a_path_with_a_silent_hop_is_valid_and_canonical():
    record = path(address="FD00:19::0001", hops=[PathHop(ttl=1, address="FD00:19:1:1::1",
                                                         rtt_s=0.001)],
                  reached=False, stopped_after_ttl=1)
    assert record.address == "fd00:19::1" and record.hops[0].address == "fd00:19:1:1::1"
    assert path().hops[1].address is None


@pytest.mark.parametrize("changes", [
    {"method": "icmp"},  # icmp has no port
    {"method": "udp", "port": None},
    {"stopped_after_ttl": 2},  # not the last TTL that answered
    {"hops": [PathHop(ttl=1, address="198.19.1.17", rtt_s=0.001),
              PathHop(ttl=3, address="198.19.0.1", rtt_s=0.003)]},  # a TTL missing
    {"hops": [PathHop(ttl=1, address="198.19.1.17", rtt_s=0.001), PathHop(ttl=2)],
     "reached": False, "stopped_after_ttl": 2},  # ends with a silent TTL
    {"hops": [PathHop(ttl=1, address="198.19.1.17", rtt_s=0.001)], "stopped_after_ttl": 1},
    {"address": "not-an-address"},
    {"hops": [], "reached": True, "stopped_after_ttl": 0},
])
def test_inconsistent_paths_are_refused(changes):
    with pytest.raises(ValidationError):
        path(**changes)


def test_hops_are_bounded():
    hops = [{"ttl": t, "address": "198.19.1.17", "rtt_s": 0.001}
            for t in range(1, MAX_PATH_HOPS + 2)]
    longest = path(hops=hops[:MAX_PATH_HOPS], reached=False,
                   stopped_after_ttl=MAX_PATH_HOPS)
    assert len(longest.hops) == MAX_PATH_HOPS
    with pytest.raises(ValidationError):
        PathRecord.model_validate({**longest.model_dump(), "hops": hops,
                                   "stopped_after_ttl": MAX_PATH_HOPS + 1})
    with pytest.raises(ValidationError):
        PathHop(ttl=MAX_PATH_HOPS + 1)
    with pytest.raises(ValidationError):
        PathHop(ttl=1, address="198.19.1.17")  # an address needs its RTT
    with pytest.raises(ValidationError):
        path(bytes_sent=-1)


def measurement(ok: bool = False, **extra) -> TcpMeasurement:
    return TcpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="web", target="198.19.0.1",
        started_at=NOW, duration_s=1.0, ok=ok,
        reason=None if ok else FailureReason.TIMEOUT, figures=TcpFigures(), **extra)


def test_a_measurement_carries_its_path_on_the_wire_and_old_ones_still_read():
    m = measurement(seq=1, path=path())
    batch = Batch.model_validate_json(json.dumps({
        "protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
        "measurements": [json.loads(m.model_dump_json())]}))
    assert batch.measurements[0].path == path()
    old = json.loads(m.model_dump_json())
    del old["path"]
    assert TcpMeasurement.model_validate(old).path is None


def test_each_check_kind_gets_the_method_of_its_own_traffic():
    assert method_for(IcmpCheck(id="a", kind="icmp", target="192.0.2.1")) == (
        "192.0.2.1", "icmp", None)
    assert method_for(TcpCheck(id="b", kind="tcp", target="192.0.2.1", port=8443)) == (
        "192.0.2.1", "tcp", 8443)
    assert method_for(HttpCheck(id="c", kind="http", target="https://docs.example/x")) == (
        "docs.example", "tcp", 443)
    assert method_for(HttpCheck(id="d", kind="http", target="http://192.0.2.1:8080/")) == (
        "192.0.2.1", "tcp", 8080)
    assert method_for(DnsCheck(id="e", kind="dns", target="192.0.2.53", name="a.example")
                      ) == ("192.0.2.53", "udp", 53)


def test_settings_leave_room_for_the_waits():
    with pytest.raises(ValidationError):
        PathSettings(wait_s=10, timeout_s=15)
    assert PathSettings().max_hops == 30


# --- the probes a recording sends (scapy; never loaded by the probe's steady process) ---

def recording(method: str, version: int = 4):
    from probes.path.trace import _Recording

    target, source = ("198.19.0.1", "198.19.1.18") if version == 4 else (
        "fd00:19::1", "fd00:19:1:1::2")
    return _Recording(target=target, version=version, method=method,
                      port=None if method == "icmp" else 53 if method == "udp" else 80,
                      source=source, sport=40_000)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("method", ["icmp", "tcp", "udp"])
def test_every_ttl_is_one_flow_and_an_error_quoting_8_bytes_names_its_ttl(method, version):
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6TimeExceeded, IPv6

    rec = recording(method, version)
    probes = {ttl: rec.packet(ttl, ttl) for ttl in range(1, 9)}
    ip_cls = IP if version == 4 else IPv6
    probes = {ttl: ip_cls(bytes(p)) for ttl, p in probes.items()}  # checksums computed
    if method == "icmp":
        # What per-flow balancers hash of ICMP (type, code, checksum) stays constant.
        flow = {bytes(p.payload)[:4] for p in probes.values()}
    else:
        layer = TCP if method == "tcp" else UDP
        flow = {(p[layer].sport, p[layer].dport) for p in probes.values()}
    assert len(flow) == 1
    assert {p.src for p in probes.values()} == {rec.source}
    for ttl, probe in probes.items():
        rec.sent_at[ttl] = 0.0
        # The oldest routers quote the IP header and 8 bytes of what follows (RFC 792).
        header = 20 if version == 4 else 40
        quote = bytes(probe)[:header + 8]
        router = "198.19.1.17" if version == 4 else "fd00:19:1:1::1"
        # IPv6 routers quote as much as fits (RFC 4443): a UDP probe's DNS id with it.
        error = (IP(src=router, dst=rec.source) / ICMP(type=11, code=0) / quote
                 if version == 4 else
                 IPv6(src=router, dst=rec.source) / ICMPv6TimeExceeded() / bytes(probe))
        assert rec.classify(ip_cls(bytes(error))) == (ttl, False), f"TTL {ttl}"


def test_answers_to_other_flows_are_not_taken():
    from scapy.layers.inet import ICMP, IP, TCP

    rec = recording("tcp")
    probe = IP(bytes(rec.packet(3, 3)))
    other = probe.copy()
    other[TCP].sport = 40_001
    error = IP(src="198.19.1.17", dst=rec.source) / ICMP(type=11) / bytes(other)[:28]
    assert rec.classify(IP(bytes(error))) is None
    # The target's SYN-ACK names the probe through its acknowledgement number.
    synack = IP(src=rec.target, dst=rec.source) / TCP(
        sport=80, dport=40_000, flags="SA", ack=probe[TCP].seq + 1)
    assert rec.classify(IP(bytes(synack))) == (3, True)


# --- the probe's side: when, and how the path reaches the wire ---

def test_a_failure_records_once_per_period_and_the_path_rides_the_next_result(tmp_path):
    async def scenario() -> None:
        # A real subprocess: to the loopback address, which answers at TTL 1 (or, without
        # CAP_NET_RAW, a record that says why it could not run).
        recorder = PathRecorder(PathSettings(min_period_s=600, baseline_every_s=None,
                                             max_hops=2, wait_s=0.2, timeout_s=10))
        recorder.configure([IcmpCheck(id="web", kind="icmp", target="127.0.0.1"),
                            IcmpCheck(id="lan", kind="icmp", target="127.0.0.1",
                                      group="local")])
        recorder.failed("web")
        recorder.failed("web")  # already under way
        recorder.failed("lan")  # the local side: no path
        assert len(recorder._tasks) == 1
        await asyncio.gather(*recorder._tasks)
        first = recorder.attach(measurement())
        assert first.path is not None and first.path.address == "127.0.0.1"
        assert first.path.trigger == "failure" and first.path.method == "icmp"
        assert recorder.attach(measurement()).path is None  # sent once
        recorder.failed("web")  # within min_period_s of the first
        assert not recorder._tasks
        await recorder.close()

    asyncio.run(scenario())


def test_a_baseline_follows_a_successful_round_only_when_due():
    async def scenario() -> None:
        recorder = PathRecorder(PathSettings(enabled=False, baseline_every_s=3600))
        recorder.configure([TcpCheck(id="web", kind="tcp", target="127.0.0.1", port=9)])
        recorder.after_round(measurement(ok=True))
        assert not recorder._tasks  # disabled
        recorder.reconfigure(PathSettings(baseline_every_s=3600, max_hops=1, wait_s=0.1,
                                          timeout_s=10))
        recorder.after_round(measurement(ok=False))
        assert not recorder._tasks  # a failed round is no baseline
        recorder.after_round(measurement(ok=True))
        assert len(recorder._tasks) == 1
        await asyncio.gather(*recorder._tasks)
        recorder.after_round(measurement(ok=True))
        assert not recorder._tasks  # the next is due in an hour
        assert recorder.attach(measurement()).path.trigger == "baseline"

    asyncio.run(scenario())
