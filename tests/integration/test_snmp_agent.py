"""The probe's SNMP agent, judged by net-snmp: a real probe on loopback measures a listening
TCP port, a closed one and 127.0.0.1 by ICMP; snmpwalk and snmptable (SNMPv3 authPriv,
SHA-256 + AES-128) read its check table with the values of the results in its outbox; bad
and random packets are dropped, counted in /metrics, and the agent keeps answering."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_for
from tests.support.snmp import (
    AUTH_KEY,
    COMMUNITY,
    MIB_ARGS,
    PLAIN,
    USER,
    expected_row,
    oid_of,
    outbox_result,
    parse_walk,
    program,
    v3,
)

pytestmark = pytest.mark.slow

FUZZ_PACKETS = 3000


class RunningProbe:
    def __init__(self, tmp_path: Path) -> None:
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
                     "community": COMMUNITY},
        }
        path = tmp_path / "probe.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = tmp_path / "probe.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "probes", "run", "-c",
                                             str(path)], stdout=log, stderr=subprocess.STDOUT)

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
                 "snmp: user monitor: the key in priv_key_file needs at least 8 characters")):
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
