"""The probe's SNMP agent, judged by net-snmp: a real probe on loopback measures a listening
TCP port, a closed one and 127.0.0.1 by ICMP; snmpwalk and snmptable (SNMPv3 authPriv,
SHA-256 + AES-128) read its check table with the values of the results in its outbox; bad
and random packets are dropped, counted in /metrics, and the agent keeps answering."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_for
from tests.support.snmp import (
    AUTH_KEY,
    COMMUNITY,
    MIB_ARGS,
    PLAIN,
    PRIV_KEY,
    USER,
    expected_row,
    oid_of,
    outbox_result,
    parse_walk,
    program,
    start_snmptrapd,
    v3,
)

pytestmark = pytest.mark.slow

FUZZ_PACKETS = 3000


class RunningProbe:
    def __init__(self, tmp_path: Path, snmp: dict | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))  # the open port
        self.closed = socket.socket()  # bound, never listening: connections are refused
        self.closed.bind(("127.0.0.1", 0))
        self.agent = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        self.metrics = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
        self.outbox = tmp_path / "outbox.sqlite"
        fast = {"interval_s": 1, "timeout_s": 0.5, "confirm_count": 1,
                "confirm_interval_s": 0.2}
        config = {
            "probe_id": "loop-1", "mission": "TST", "outbox": str(self.outbox),
            # Nothing listens there: results stay in the outbox, where the test reads them.
            "collector": {"urls": [f"http://127.0.0.1:{self.closed.getsockname()[1]}/"],
                          "token": "unused", "backoff_initial_s": 5, "backoff_max_s": 5},
            "local": {"gateway": "none", "resolver": "none"},
            "checks": [
                {"id": "open-port", "kind": "tcp", "target": "127.0.0.1",
                 "port": self.listener.getsockname()[1], **fast},
                {"id": "closed-port", "kind": "tcp", "target": "127.0.0.1",
                 "port": self.closed.getsockname()[1], **fast},
                {"id": "loopback", "kind": "icmp", "target": "127.0.0.1", "count": 3,
                 "packet_interval_s": 0.02, **fast},
            ],
            "metrics": {"listen": self.metrics},
            "snmp": {"agent": {"listen": self.agent},
                     "users": [{"name": USER, "auth_key": AUTH_KEY,
                                "priv_key": "priv-pass-phrase"}],
                     "community": COMMUNITY, **(snmp or {})},
        }
        path = tmp_path / "probe.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = tmp_path / "probe.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "probes", "run", "-c",
                                             str(path)], stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})

    def snmp(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([program(command), "-t", "2", "-r", "1", *MIB_ARGS, *PLAIN, *args],
                              capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, done.stderr + self.log.read_text()[-3000:]
        return done

    def walk(self) -> dict[str, str]:
        return parse_walk(self.snmp("snmpwalk", *v3(), self.agent,
                                    "UNHINDERED-MIB::unhinderedMIB").stdout)

    def samples(self, name: str) -> list:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == name]

    def dropped(self) -> dict[str, float]:
        return {s.labels["reason"]: s.value
                for s in self.samples("unhindered_probe_snmp_dropped_packets_total")}

    def received(self) -> float:
        (sample,) = self.samples("unhindered_probe_snmp_received_packets_total")
        return sample.value

    def send_paced(self, packets: list[bytes], burst: int = 50) -> None:
        """Sends in bursts, each once the agent has taken in the one before: the kernel
        must not drop any for lack of buffer, so that every packet reaches the engine."""
        host, port = self.agent.rsplit(":", 1)
        start = self.received()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(0, len(packets), burst):
                for packet in packets[i:i + burst]:
                    s.sendto(packet, (host, int(port)))
                sent = min(i + burst, len(packets))
                wait_for(lambda sent=sent: self.received() - start >= sent, 20,
                         f"the agent to take in {sent} of {len(packets)} packets")

    def rss_mib(self) -> tuple[float, float]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.listener.close()
        self.closed.close()


@pytest.fixture
def probe(tmp_path):
    running = RunningProbe(tmp_path)
    try:
        wait_for(lambda: "unhCheckName.3" in running.walk(), 30, "the agent to answer")
        yield running
    finally:
        running.close()


def rows(walk: dict[str, str]) -> dict[str, dict[str, str]]:
    """Check table columns by row index."""
    table: dict[str, dict[str, str]] = {}
    for name, value in walk.items():
        column, _, index = name.partition(".")
        if column.startswith("unhCheck"):
            table.setdefault(index, {})[column] = value
    return table


def moment(date_and_time: str) -> tuple[int, ...]:
    """net-snmp's DateAndTime text (2026-11-29,9:17:36.5,+0:0) as comparable numbers."""
    day, clock, _zone = date_and_time.split(",")
    return tuple(int(x) for x in [*day.split("-"), *clock.replace(".", ":").split(":")])


def is_its_outbox_result(probe: RunningProbe, row: dict[str, str]) -> bool:
    """Whether the row shows exactly the result its unhCheckLastSeq names."""
    result = outbox_result(probe.outbox, int(row["unhCheckLastSeq"]))
    return {k: row[k] for k in expected_row(result)} == expected_row(result)


def test_snmpwalk_v3_reads_the_probes_current_measurements(probe):
    def measured_and_confirmed():
        walk = probe.walk()
        table = rows(walk)
        done = len(table) == 3 and all(r["unhCheckState"] != "4" for r in table.values())
        # A walk takes many requests, column after column, and may straddle a round that
        # ends: then a row mixes two rounds. Walk again until one falls between rounds.
        consistent = done and all(is_its_outbox_result(probe, r) for r in table.values())
        # (The access scalar, read first, may likewise predate the rows.)
        return walk if consistent and walk["unhProbeAccessState.0"] == "3" else None

    walk = wait_for(measured_and_confirmed, 30,
                    "a walk showing every check measured, confirmed, as in the outbox")
    table = {r["unhCheckName"]: r for r in rows(walk).values()}
    for row in table.values():
        assert moment(row["unhCheckLastChange"]) <= moment(row["unhCheckLastRound"])
    # The confirmed states: the open port and loopback up, the closed port down.
    assert {n: r["unhCheckState"] for n, r in table.items()} == {
        "open-port": "1", "closed-port": "3", "loopback": "1"}
    assert table["closed-port"]["unhCheckFailureReason"] == "refused"
    assert walk["unhProbeId.0"] == "loop-1" and walk["unhProbeMission.0"] == "TST"
    # (unhProbeAccessState is 3, down: the worst of the checks, the closed port.)
    assert walk["unhProbeLastAckTime.0"] == "1970-1-1,0:0:0.0,+0:0"
    # Nothing acknowledges the results (read from the outbox every 2 s).
    wait_for(lambda: int(probe.walk()["unhProbeOutboxDepth.0"]) > 0, 10, "an outbox depth")
    assert int(walk["unhProbeUptime.0"]) > 100  # TimeTicks: over a second


def test_snmptable_v3_shows_the_same_table(probe):
    wait_for(lambda: all(r["unhCheckLastSeq"] != "0" for r in rows(probe.walk()).values()),
             30, "every check measured")

    def table() -> list[dict[str, str]] | None:
        done = probe.snmp("snmptable", *v3(), "-Cf", "|", "-Ci", probe.agent,
                          "UNHINDERED-MIB::unhCheckTable")
        lines = [line for line in done.stdout.splitlines() if "|" in line]
        header, *values = (line.split("|") for line in lines)
        assert header[0] == "index" and "unhCheckRttMedian" in header
        # snmptable keeps the type in front of each value (STRING: open-port).
        table = [{h: v.split(": ", 1)[-1] for h, v in zip(header, row, strict=True)}
                 for row in values]
        # GETBULK takes a few requests: as with the walk, one may straddle a round.
        return table if all(is_its_outbox_result(probe, r) for r in table) else None

    shown = wait_for(table, 30, "a table showing the outbox results")
    assert sorted(r["unhCheckName"] for r in shown) == ["closed-port", "loopback", "open-port"]


def test_v2c_needs_the_configured_community(probe):
    done = probe.snmp("snmpget", "-v2c", "-c", COMMUNITY, probe.agent,
                      "UNHINDERED-MIB::unhProbeId.0")
    assert parse_walk(done.stdout) == {"unhProbeId.0": "loop-1"}
    before = probe.dropped()["bad_community"]
    refused = probe.snmp("snmpget", "-v2c", "-c", "public", probe.agent,
                         "UNHINDERED-MIB::unhProbeId.0", check=False)
    assert refused.returncode != 0 and "Timeout" in refused.stderr
    assert probe.dropped()["bad_community"] == before + 2  # the request and its retry


def test_bad_and_random_packets_are_dropped_and_counted(probe):
    before = probe.dropped()
    wrong = {
        "wrong_digest": v3(auth="not-the-auth-key"),
        "unknown_user": v3(user="intruder"),
        "unknown_engine_id": [*v3(), "-e", "0x80001f88804e6f5375636845"],
    }
    for reason, args in wrong.items():
        done = probe.snmp("snmpget", *args, probe.agent, "UNHINDERED-MIB::unhProbeId.0",
                          check=False)
        assert done.returncode != 0, reason
        assert probe.dropped()[reason] > before[reason], reason
    # A wrong privacy key: authentic, but the PDU decrypts to garbage.
    done = probe.snmp("snmpget", *v3(priv="not-the-priv-key"), probe.agent,
                      "UNHINDERED-MIB::unhProbeId.0", check=False)
    assert done.returncode != 0

    # A valid v2c request truncated at every length, and random packets: all dropped.
    request = valid_v2c_request()
    rng = random.Random(5)
    garbage = [request[:n] for n in range(1, len(request))]
    garbage += [rng.randbytes(rng.randint(1, 400)) for _ in range(FUZZ_PACKETS)]
    before = probe.dropped()
    probe.send_paced(garbage)
    after = probe.dropped()
    assert sum(after.values()) - sum(before.values()) == len(garbage), (before, after)
    # Mutations of the valid request: some are still valid, none may stop the agent.
    mutated = []
    for _ in range(FUZZ_PACKETS // 3):
        packet = bytearray(request)
        for _ in range(rng.randint(1, 4)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        mutated.append(bytes(packet))
    probe.send_paced(mutated)
    assert probe.process.poll() is None
    walk = probe.walk()  # still answering, with authPriv
    assert walk["unhProbeId.0"] == "loop-1" and len(rows(walk)) == 3
    rss, peak = probe.rss_mib()
    print(f"probe with SNMP agent after {len(garbage) + len(mutated)} fuzz packets: "
          f"RSS {rss:.1f} MiB, "
          f"peak {peak:.1f} MiB")
    assert "Traceback" not in probe.log.read_text()


def test_a_port_in_use_or_a_refused_key_file_stops_the_start_with_a_clear_error(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        (tmp_path / "priv.key").write_text("short\n")
        snmp = {"agent": {"listen": f"127.0.0.1:{port}"},
                "users": [{"name": USER, "auth_key": AUTH_KEY, "priv_key": "priv-pass-phrase"}]}
        path = tmp_path / "probe.yaml"
        for section, expected in (
                (snmp, f"SNMP agent cannot listen on 127.0.0.1:{port}: Address already in use"),
                ({**snmp, "users": [{"name": USER, "auth_key": AUTH_KEY,
                                      "priv_key_file": "priv.key"}]},
                 # Refused when the config is read, as check-config refuses it.
                 "snmp.users[0].priv_key_file: the pass phrase in it needs at least 8 "
                 "characters (got 'priv.key')")):
            path.write_text(yaml.safe_dump({
                "probe_id": "loop-1", "mission": "TST", "outbox": "outbox.sqlite",
                "collector": {"urls": ["http://127.0.0.1:1/"], "token": "unused"},
                "local": {"gateway": "none", "resolver": "none"},
                "checks": [{"id": "c", "kind": "tcp", "target": "127.0.0.1", "port": 1}],
                "snmp": section}))
            done = subprocess.run([sys.executable, "-m", "probes", "run", "-c", str(path)],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 2, done.stderr
            assert expected in done.stderr and "Traceback" not in done.stderr


ENGINE_ID = "80001f8804756e68696e6465726564"


def master_key(pass_phrase: str) -> bytes:
    """RFC 3414 A.2 with SHA-256 (RFC 7860): the key a pass phrase stands for."""
    repeated = pass_phrase.encode() * (1_048_576 // len(pass_phrase) + 1)
    return hashlib.sha256(repeated[:1_048_576]).digest()


def localized_key(pass_phrase: str, engine_id: bytes) -> bytes:
    """The key as one engine uses it (AES-128 takes its first 16 octets)."""
    key = master_key(pass_phrase)
    return hashlib.sha256(key + engine_id + key).digest()


def hex_dumped(text: str) -> bytes:
    """The octets of every hex dump in pysnmp's trace (`00016: 6C 61 62 ...` lines)."""
    return bytes.fromhex(" ".join(re.findall(r"^\s*\d{5}: ((?:[0-9A-F]{2} ?)+)$", text,
                                             re.MULTILINE)))


def test_the_debug_trace_shows_no_pass_phrase_key_or_community(tmp_path):
    """UNHINDERED_SNMP_DEBUG=all while the agent answers v3 and v2c requests and v3
    informs and a v2c trap go to a net-snmp snmptrapd: pysnmp traces every step, and
    neither the pass phrases, the keys derived from them (for the probe's engine and for
    snmptrapd's) nor the community reach the log."""
    traps = free_port(socket.SOCK_DGRAM)
    receiver = start_snmptrapd(subprocess.Popen, tmp_path / "trapd", f"127.0.0.1:{traps}")
    running = RunningProbe(tmp_path, env={"UNHINDERED_SNMP_DEBUG": "all"}, snmp={
        "engine_id": ENGINE_ID,
        "notify": [{"name": "v3", "address": f"127.0.0.1:{traps}", "user": USER},
                   {"name": "v2c", "address": f"127.0.0.1:{traps}", "version": "v2c",
                    "type": "trap"}]})
    try:
        wait_for(lambda: "unhCheckName.3" in running.walk(), 30, "the agent to answer")
        running.snmp("snmpget", "-v2c", "-c", COMMUNITY, running.agent,
                     "UNHINDERED-MIB::unhProbeId.0")
        # The closed port goes down: a v3 inform (keys localized for snmptrapd's engine)
        # and a v2c trap (the community in clear).
        wait_for(lambda: receiver.received().count("checkDown") >= 2, 30,
                 "snmptrapd to log the inform and the trap")
        # Read while the probe runs: its stop is not what this test is about.
        log = running.log.read_text(errors="replace")
    finally:
        running.close()
        receiver.process.terminate()
        receiver.process.wait(10)
    persisted = (tmp_path / "trapd" / "persist" / "snmptrapd.conf").read_text()
    (their_engine,) = re.findall(r"oldEngineID 0x([0-9a-fA-F]+)", persisted)
    # The trace is there, with what diagnosis needs: the engines' ids.
    assert log.count(" pysnmp: ") > 1_000
    assert ENGINE_ID in log.lower() and their_engine.lower() in log.lower()
    assert 'usmUserAuthKeyLocalized "<withheld>"' in log
    secrets = {"auth pass phrase": AUTH_KEY.encode(), "priv pass phrase": PRIV_KEY.encode(),
               "community": COMMUNITY.encode()}
    for name, phrase in (("auth", AUTH_KEY), ("priv", PRIV_KEY)):
        secrets[f"{name} master key"] = master_key(phrase)
        for engine in (ENGINE_ID, their_engine):
            key = localized_key(phrase, bytes.fromhex(engine))
            secrets[f"{name} key for {engine}"] = key
            secrets[f"{name} key for {engine}, 16 octets"] = key[:16]
    dumped = hex_dumped(log)
    assert len(dumped) > 1_000  # packets were dumped
    for name, secret in secrets.items():
        for form in (secret.decode("latin-1"), secret.hex(), secret.hex().upper(),
                     repr(secret)[2:-1]):
            assert form not in log, f"the {name} is in the log as {form!r}"
        assert secret not in dumped, f"the {name} is in a hex dump"
    # (pysnmp traces tracebacks it handles, inside its messages: no line starts with one.)
    assert not re.search(r"^Traceback", log, re.MULTILINE)


def valid_v2c_request() -> bytes:
    """A GET for unhProbeId.0 with the right community, encoded by pysnmp."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_varbinds(pdu, [((*oid_of("unhProbeId"), 0), v2c.Null(""))])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, COMMUNITY)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


# --- well-formed requests with hostile values (issue 12's fault suite) ---

HOSTILE_COMMUNITIES = [b"", b"public", b"x" * 5_000, b"lab\x00community", b"a\nERROR forged",
                       b"\xff\xfe", b"<script>", COMMUNITY.encode() + b"\n"]


@functools.cache
def prefixes() -> list[tuple[int, ...]]:
    return [oid_of("unhinderedMIB"), oid_of("unhCheckName"), (1, 3, 6, 1), (1, 3), (2, 999)]


@st.composite
def hostile_requests(draw) -> dict:
    """A v2c request, as data: GET, GETNEXT, GETBULK or SET, of any OIDs (in the MIB or
    not, huge arcs), SET values of any kind, any max-repetitions, with the community or
    another."""
    right = draw(st.booleans())
    prefix = draw(st.sampled_from(prefixes()))
    arcs = st.lists(st.integers(0, 2**32 - 1), max_size=12)
    return {
        "right": right,
        "community": COMMUNITY.encode() if right else draw(
            st.sampled_from(HOSTILE_COMMUNITIES)),
        "kind": draw(st.sampled_from(["get", "next", "bulk", "set"])),
        "oids": draw(st.lists(arcs.map(lambda a: (*prefix, *a)), min_size=1, max_size=8)),
        "values": draw(st.lists(st.one_of(
            st.binary(max_size=300), st.sampled_from([b"x" * 5_000, b"\x00", b"a\nb"]),
            st.integers(-2**31, 2**31 - 1)), min_size=8, max_size=8)),
        "non_repeaters": draw(st.integers(0, 10)),
        "max_repetitions": draw(st.sampled_from([0, 1, 50, 2**31 - 1])),
    }


def encoded(request: dict) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api, rfc1902

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    kind = request["kind"]
    pdu = {"get": v2c.GetRequestPDU, "next": v2c.GetNextRequestPDU,
           "bulk": v2c.GetBulkRequestPDU, "set": v2c.SetRequestPDU}[kind]()
    if kind == "bulk":
        v2c.apiBulkPDU.set_defaults(pdu)
        v2c.apiBulkPDU.set_non_repeaters(pdu, request["non_repeaters"])
        v2c.apiBulkPDU.set_max_repetitions(pdu, request["max_repetitions"])
    else:
        v2c.apiPDU.set_defaults(pdu)

    def value(v):
        if kind != "set":
            return v2c.Null("")
        return rfc1902.Integer32(v) if isinstance(v, int) else rfc1902.OctetString(v)

    v2c.apiPDU.set_varbinds(pdu, [(o, value(v)) for o, v in
                                  zip(request["oids"], request["values"], strict=False)])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, request["community"])
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def test_fuzz_well_formed_requests_with_hostile_values(probe):
    drawn: list[dict] = []

    @settings(max_examples=600, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_requests())
    def draw(example) -> None:
        drawn.append(example)

    draw()
    wrong = sum(1 for request in drawn if not request["right"])
    assert 100 < wrong < len(drawn) - 100
    before = probe.dropped()
    probe.send_paced([encoded(request) for request in drawn])
    after = probe.dropped()
    # Each request with another community is refused and counted; SETs with the right one
    # are answered with an error (the agent is read-only); nothing stops the agent.
    assert after["bad_community"] - before["bad_community"] == wrong
    assert probe.process.poll() is None
    walk = probe.walk()
    assert walk["unhProbeId.0"] == "loop-1" and len(rows(walk)) == 3
    assert sorted(r["unhCheckName"] for r in rows(walk).values()) == [
        "closed-port", "loopback", "open-port"]
    log = probe.log.read_text()
    assert "Traceback" not in log and "forged" not in log
