"""net-snmp's snmptrap and snmpinform against the collector's receiver, served on loopback
with its web app: accepted notifications become stored states; every kind of bad message
is dropped, counted, and the receiver goes on serving."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pyasn1.codec.ber import encoder

from collector.config import CollectorConfig
from collector.core import Collector
from collector.snmp import mib
from collector.snmp.settings import ReceiverSettings, SnmpSettings, TrapSender
from collector.store.database import Store
from collector.store.schema import access_intervals
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from tests.support import free_port
from tests.support.netsnmp import check_varbinds, dotted, send, v2c
from tests.support.snmp import AUTH_KEY, PRIV_KEY, v3
from unhindered.snmp.settings import SnmpUser
from unhindered.snmp.values import date_and_time

DOWN, UP = 3, 1
CHECK = "internet-icmp"


class Running:
    def __init__(self, url: str, port: int, store: Store, app: Collector) -> None:
        self.url, self.port, self.store = url, port, store
        self.app = app  # the Collector itself: its counters, without /metrics' delay

    async def metrics(self) -> dict[tuple[str, frozenset], float]:
        async with ClientSession() as session, session.get(self.url + "metrics") as response:
            text = await response.text()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def dropped(self, reason: str) -> float:
        return (await self.metrics())[("unhindered_snmp_dropped_total",
                                       frozenset({("reason", reason)}))]

    async def state(self, mission: str, check: str) -> str | None:
        metrics = await self.metrics()
        for (name, labels), value in metrics.items():
            labels = dict(labels)
            if (name == "unhindered_check_state" and value == 1
                    and labels["mission"] == mission and labels["check"] == check):
                return labels["state"]
        return None

    async def wait_state(self, mission: str, check: str, state: str) -> None:
        for _ in range(50):
            if await self.state(mission, check) == state:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"{mission} {check} never became {state}: "
                    f"{await self.state(mission, check)}")


@pytest.fixture
async def collector(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    store.migrate()
    store.add_probe("fra-1", "FRA")
    store.add_probe("ken-1", "KEN")
    port = free_port(socket.SOCK_DGRAM)
    senders = (
        TrapSender(probe_id="fra-1", community="fra-secret"),
        TrapSender(probe_id="fra-1", user=SnmpUser(name="fra1", auth_key=AUTH_KEY,
                                                  priv_key=PRIV_KEY)),
        TrapSender(probe_id="ken-1", community="ken-secret"),
        TrapSender(probe_id="gone-1", community="gone-secret"),  # not registered
    )
    config = CollectorConfig(snmp=SnmpSettings(receiver=ReceiverSettings(
        host="127.0.0.1", port=port, senders=senders)))
    server = TestServer(create_app(config, store), host="127.0.0.1")
    await server.start_server()
    yield Running(str(server.make_url("/")), port, store, server.app[COLLECTOR])
    await server.close()


def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to `port` on 127.0.0.1 (its
    receive buffer was full): the `drops` column of /proc/net/udp."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[-1])
    raise AssertionError(f"no UDP socket bound to 127.0.0.1:{port}")


def recent(seconds_ago: int) -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).replace(microsecond=0)


async def notify(collector: Running, tool: str, security: list[str], notification: str,
                 state: int, reason: str, when: datetime, expect: str) -> list:
    status, err = await send(tool, security, collector.port, notification,
                             check_varbinds("fra-1", "FRA", CHECK, state, reason, when))
    assert status == 0, err
    await collector.wait_state("FRA", CHECK, expect)
    for _ in range(50):  # /metrics shows the state as the database thread writes it
        rows = collector.store.intervals("FRA", CHECK)
        if rows and rows[-1].state == expect:
            break
        await asyncio.sleep(0.1)
    return [(r.state, r.started_at, r.ended_at, r.cause) for r in rows]


async def test_v2c_trap_and_v3_inform_become_stored_states(collector):
    down_at, up_at = recent(60), recent(20)
    assert await notify(collector, "snmptrap", v2c("fra-secret"), "checkDown", DOWN,
                        "timeout", down_at, "down") == [
        ("down", down_at.timestamp(), None, "snmp checkDown (timeout)")]
    # An inform is acknowledged: snmpinform exits 0 only when the receiver answered.
    assert await notify(collector, "snmpinform", v3("fra1"), "checkUp", UP, "", up_at,
                        "up") == [
        ("down", down_at.timestamp(), up_at.timestamp(), "snmp checkDown (timeout)"),
        ("up", up_at.timestamp(), None, "snmp checkUp")]
    metrics = await collector.metrics()
    received = "unhindered_snmp_notifications_received_total"
    assert metrics[(received, frozenset({("notification", "checkDown")}))] == 1
    assert metrics[(received, frozenset({("notification", "checkUp")}))] == 1
    # The mission's access follows from the check, like for HTTP results.
    for _ in range(50):
        access = [r.state for r in collector.store.intervals("FRA", "*",
                                                            table=access_intervals)]
        if access == ["down", "up"]:
            break
        await asyncio.sleep(0.1)
    assert access == ["down", "up"]
    assert sum(v for (name, _l), v in metrics.items()
               if name == "unhindered_snmp_dropped_total") == 0


async def test_bad_messages_are_dropped_counted_and_the_receiver_goes_on(collector):
    changed = recent(30)
    fra_down = check_varbinds("fra-1", "FRA", CHECK, DOWN, "timeout", changed)

    assert (await send("snmptrap", v2c("wrong"), collector.port, "checkDown", fra_down))[0] == 0
    assert (await send("snmpinform", v3("fra1", auth="not-the-auth-key"), collector.port,
                       "checkDown", fra_down))[0] != 0  # never acknowledged
    assert (await send("snmpinform", v3("nobody"), collector.port, "checkDown",
                       fra_down))[0] != 0
    # A v3 trap from an engine the receiver does not know (traps are not discovered).
    assert (await send("snmptrap", v3("fra1"), collector.port, "checkDown", fra_down,
                       "-e", "0x80001f8880aabbccddeeff0011"))[0] == 0
    # Right credentials, wrong identity: fra-1's community naming ken-1, fra-1 naming
    # mission KEN, and a configured but unregistered probe.
    for community, probe, mission in (("fra-secret", "ken-1", "KEN"),
                                      ("fra-secret", "fra-1", "KEN"),
                                      ("gone-secret", "gone-1", "FRA")):
        varbinds = check_varbinds(probe, mission, CHECK, DOWN, "timeout", changed)
        assert (await send("snmptrap", v2c(community), collector.port, "checkDown",
                           varbinds))[0] == 0
    # Dated an hour ahead of the collector's clock (ingest.max_future_s is 300 s).
    assert (await send("snmptrap", v2c("fra-secret"), collector.port, "checkDown",
                       check_varbinds("fra-1", "FRA", CHECK, DOWN, "timeout",
                                      recent(-3600))))[0] == 0
    # A checkDown lacking its objects.
    assert (await send("snmptrap", v2c("fra-secret"), collector.port, "checkDown",
                       [dotted("unhProbeId", 0), "s", "fra-1"]))[0] == 0
    # Truncated and random datagrams.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x30\x82\x01\x00\x02\x01", ("127.0.0.1", collector.port))
        s.sendto(bytes(range(256)), ("127.0.0.1", collector.port))

    async def counted():
        return {r: await collector.dropped(r) for r in (
            "bad_community", "bad_credentials", "unknown_engine", "unknown_probe",
            "malformed")}

    expected = {"bad_community": 1, "bad_credentials": 2, "unknown_engine": 1,
                "unknown_probe": 3, "malformed": 4}
    for _ in range(50):
        if await counted() == expected:
            break
        await asyncio.sleep(0.1)
    assert await counted() == expected
    assert await collector.state("FRA", CHECK) is None  # nothing got through
    assert await collector.state("KEN", CHECK) is None

    status, err = await send("snmpinform", v3("fra1"), collector.port, "checkDown", fra_down)
    assert status == 0, err
    await collector.wait_state("FRA", CHECK, "down")


HOSTILE_VALUES = [  # (object, snmptrap type, value): each refused by the HTTP rules
    ("unhCheckName", "s", ""),
    ("unhCheckName", "s", "c" * 5_000),
    ("unhCheckName", "x", "61 00 62"),  # a NUL
    ("unhCheckName", "s", "<script>alert(1)</script>"),
    ("unhCheckName", "s", "x\n2026-01-01 00:00:00 ERROR forged line"),
    ("unhCheckName", "x", "ff fe 41"),  # not UTF-8
    ("unhCheckTarget", "s", "t" * 256),
    ("unhCheckTarget", "s", "198.19.0.1\nERROR forged line"),
    ("unhCheckTarget", "x", "31 00 32"),
    ("unhCheckFailureReason", "s", "timeout\nERROR forged line"),
    ("unhCheckFailureReason", "s", "cosmic rays"),
    ("unhProbeMission", "s", "FRA\nERROR forged line"),
]


def with_value(varbinds: list[str], obj: str, kind: str, value: str) -> list[str]:
    """snmptrap arguments with one object's type and value replaced."""
    varbinds = list(varbinds)
    at = next(i for i in range(0, len(varbinds), 3)
              if varbinds[i].rsplit(".", 1)[0] == dotted(obj))
    varbinds[at + 1:at + 3] = [kind, value]
    return varbinds


async def test_values_http_would_refuse_are_dropped_and_logged_safely(collector, caplog):
    caplog.set_level("INFO", logger="collector.snmp")
    valid = check_varbinds("fra-1", "FRA", "hostile", DOWN, "timeout", recent(30))
    for obj, kind, value in HOSTILE_VALUES:
        status, err = await send("snmptrap", v2c("fra-secret"), collector.port, "checkDown",
                                 with_value(valid, obj, kind, value))
        assert status == 0, err
    for _ in range(50):
        if await collector.dropped("malformed") == len(HOSTILE_VALUES):
            break
        await asyncio.sleep(0.1)
    assert await collector.dropped("malformed") == len(HOSTILE_VALUES)
    # Each drop logged once, naming the object, its value quoted on one line.
    drops = [r.getMessage() for r in caplog.records if "dropped a notification" in
             r.getMessage()]
    assert len(drops) == len(HOSTILE_VALUES), drops
    for (obj, _kind, _value), message in zip(HOSTILE_VALUES, drops, strict=True):
        assert obj in message, message
        assert "\n" not in message and "\x00" not in message and len(message) < 400
    assert not any("forged" in line for r in caplog.records
                   for line in r.getMessage().splitlines()[1:])
    # Nothing reached the state, the store or /metrics.
    assert collector.store.open_intervals() == []
    metrics = await collector.metrics()
    assert not [labels for name, labels in metrics if name == "unhindered_check_state"]
    received = "unhindered_snmp_notifications_received_total"
    assert not [v for (name, _l), v in metrics.items() if name == received and v]
    # The same notification with its own values is accepted.
    status, err = await send("snmptrap", v2c("fra-secret"), collector.port, "checkDown",
                             valid)
    assert status == 0, err
    await collector.wait_state("FRA", "hostile", "down")


async def _captured_trap(port: int) -> bytes:
    """One valid v2c checkDown as net-snmp encodes it, caught on a socket of our own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        catcher = s.getsockname()[1]
        await send("snmptrap", v2c("fra-secret"), catcher, "checkDown",
                   check_varbinds("fra-1", "FRA", CHECK, DOWN, "timeout", recent(5)))
        return await asyncio.get_running_loop().sock_recv(s, 65_535)


@pytest.mark.slow
async def test_fuzz_thousands_of_packets(collector):
    rng = random.Random(5)  # reproducible
    valid = await _captured_trap(collector.port)
    packets = []
    for i in range(3_000):
        kind = i % 3
        if kind == 0:
            packet = rng.randbytes(rng.randint(0, 600))
        elif kind == 1:
            packet = valid[:rng.randint(0, len(valid) - 1)]
        else:
            mutated = bytearray(valid)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            packet = bytes(mutated)
        packets.append(packet)
    before = await collector.metrics()
    lost_before = kernel_drops(collector.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, packet in enumerate(packets):
            s.sendto(packet, ("127.0.0.1", collector.port))
            if n % 20 == 0:
                await asyncio.sleep(0.02)  # let the receiver keep up: UDP has no backlog

    def delta(after: dict, name: str) -> float:
        return sum(v - before.get(k, 0) for k, v in after.items() if k[0] == name)

    async def counts() -> tuple[float, float, int]:
        after = await collector.metrics()
        return (delta(after, "unhindered_snmp_dropped_total"),
                delta(after, "unhindered_snmp_notifications_received_total"),
                kernel_drops(collector.port) - lost_before)

    # Every packet is dropped and counted, or accepted (a mutation that only changed a
    # value: v2c has no integrity check), or lost by the kernel before the receiver read
    # it (its socket buffer full on a busy machine: the kernel counts those per socket).
    # /metrics is rendered ahead and may be a few seconds behind: wait for the sum.
    seen: tuple = ()
    for _ in range(60):
        seen = await counts()
        if sum(seen) >= len(packets):
            break
        await asyncio.sleep(0.5)
    dropped, accepted, lost = seen
    assert dropped + accepted + lost == len(packets), seen
    assert lost <= len(packets) / 3, seen  # most of them reached the receiver
    assert dropped >= (len(packets) * 2 / 3 - lost)  # the random and truncated ones at least
    # Still serving: an inform is acknowledged and applied.
    status, err = await send("snmpinform", v3("fra1"), collector.port, "checkUp",
                             check_varbinds("fra-1", "FRA", "after-fuzz", UP, "", recent(1)))
    assert status == 0, err
    await collector.wait_state("FRA", "after-fuzz", "up")


# --- well-formed notifications with hostile values (issue 12's fault suite) ---

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")  # docs/protocol.md
# The free-text rule (docs/protocol.md): no C0, DEL or C1 control character. Not
# str.isprintable(), which also refuses the no-break space (French typography puts one
# before ":"), private-use and unassigned code points (RFC 3987 allows both in an IRI), and
# which depends on the Unicode version of the Python running it.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MISSION = re.compile(r"[A-Z0-9][A-Z0-9-]{1,15}")
REASONS = {"timeout", "refused", "unreachable", "dns", "tls", "http_status", "body_mismatch",
           "unexpected_answer", "error"}
HOSTILE_OCTETS = [b"", b"x" * 5_000, b"a\x00b", b"<script>alert(1)</script>",
                  b"a\nERROR forged line", b"\r\n", b"\xff\xfe\xfd", b"\x1b[31mred",
                  "caf\u00e9".encode(), "\u2028".encode(), b"t" * 256, b'"}\n# injected']


def hostile_octets() -> st.SearchStrategy[bytes]:
    """Text nobody should store: known hostile values, and anything at all."""
    return st.one_of(st.sampled_from(HOSTILE_OCTETS), st.binary(max_size=80),
                     st.text(max_size=80).map(str.encode))


@st.composite
def hostile_notifications(draw, when: bytes, later: bytes) -> tuple[str, dict]:
    """(name, object -> value) of one notification: valid values, some of them (or none)
    replaced by hostile ones. Values are bytes (OctetString) or int (Integer32)."""
    name = draw(st.sampled_from(["checkDown", "checkUp", "accessLost", "accessRestored"]))
    down = name in ("checkDown", "accessLost")
    state = 3 if down else draw(st.sampled_from([1, 2]))
    # Another registered probe and its mission, or this one's: valid values all.
    probe, mission = draw(st.sampled_from([(b"fra-1", b"FRA")] * 4 + [(b"ken-1", b"KEN"),
                                                                      (b"fra-1", b"KEN")]))
    values: dict[str, object] = {"unhProbeId": probe, "unhProbeMission": mission}
    if name.startswith("check"):
        values |= {
            "unhCheckName": draw(st.one_of(st.sampled_from([b"internet-icmp", b"a:b.c_d-e"]),
                                           st.from_regex(IDENTIFIER, fullmatch=True)
                                           .map(str.encode))),
            "unhCheckKind": draw(st.sampled_from([1, 2, 3, 4])),
            "unhCheckTarget": draw(st.sampled_from(
                [b"198.19.0.1", b"<b>html</b>", b"t" * 255, "caf\u00e9".encode()])),
            "unhCheckState": state,
            "unhCheckFailureReason": draw(st.sampled_from([b"timeout", b"error"]))
            if down else b"",
            "unhCheckLastChange": when,
        }
    else:
        values |= {"unhProbeAccessState": state, "unhProbeAccessLastChange": when}
    # Sorted: a set's order varies with PYTHONHASHSEED, and with it what is drawn next.
    for obj in sorted(draw(st.sets(st.sampled_from(sorted(values)), max_size=3))):
        if obj.endswith("State") or obj == "unhCheckKind":
            values[obj] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, -1, 2**31 - 1]))
        elif obj.endswith("LastChange"):
            values[obj] = draw(st.sampled_from([later, b"", b"\x07\xea", b"\xff" * 11]))
        else:
            values[obj] = draw(hostile_octets())
    return name, values


def expected_outcome(name: str, values: dict, when: bytes) -> str:
    """What the receiver must make of a notification, by the documented rules
    (docs/snmp-collector.md), worked out here independently of the receiver."""
    text = {}
    for obj, value in values.items():
        if isinstance(value, bytes) and not obj.endswith("LastChange"):
            try:
                text[obj] = value.decode("utf-8")
            except UnicodeDecodeError:
                return "malformed"
    if values[next(o for o in values if o.endswith("LastChange"))] != when:
        return "malformed"  # garbage, or an hour ahead of the clock
    if not (IDENTIFIER.fullmatch(text["unhProbeId"])
            and MISSION.fullmatch(text["unhProbeMission"])):
        return "malformed"
    down = name in ("checkDown", "accessLost")
    if name.startswith("check"):
        target, reason = text["unhCheckTarget"], text["unhCheckFailureReason"]
        state = values["unhCheckState"]
        if not (IDENTIFIER.fullmatch(text["unhCheckName"])
                and values["unhCheckKind"] in (1, 2, 3, 4)
                and 0 < len(target) <= 255
                and not any(unicodedata.category(c) == "Cc" for c in target)
                and (reason in REASONS if down else reason == "")):
            return "malformed"
    else:
        state = values["unhProbeAccessState"]
    if state not in ((3,) if down else (1, 2)):
        return "malformed"
    if (text["unhProbeId"], text["unhProbeMission"]) != ("fra-1", "FRA"):
        return "unknown_probe"
    return "accepted"


def v2c_trap(community: str, name: str, values: dict) -> bytes:
    """A v2c trap PDU carrying `values` under the notification's objects."""
    from pysnmp.proto import api, rfc1902

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    varbinds = [((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(0)),
                ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), rfc1902.ObjectIdentifier(mib.oid(name)))]
    for obj, value in values.items():
        syntax = (rfc1902.Integer32(value) if isinstance(value, int)
                  else rfc1902.OctetString(value))
        varbinds.append(((*mib.oid(obj), 1 if obj.startswith("unhCheck") else 0), syntax))
    pdu = v2c.SNMPv2TrapPDU()
    v2c.apiTrapPDU.set_defaults(pdu)
    v2c.apiTrapPDU.set_varbinds(pdu, varbinds)
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, community)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def generated(strategy: st.SearchStrategy, count: int, examples: tuple = ()) -> list:
    """`examples`, then `count` examples of a strategy, the same ones on every run
    (whatever PYTHONHASHSEED is). Hypothesis only draws them here: the collector under
    test is one for all of them, nothing to shrink."""
    drawn: list = []

    def draw(value) -> None:
        drawn.append(value)

    for value in reversed(examples):  # hypothesis runs the outermost first
        draw = example(value)(draw)
    settings(max_examples=count, database=None, derandomize=True, deadline=None,
             suppress_health_check=list(HealthCheck))(given(strategy)(draw))()
    return drawn


def failed_once(when: bytes) -> tuple:
    """The notifications this test failed on before its draws were sorted, kept as
    explicit examples: accepted changes of FRA's checks whose targets hold no control
    character but are not str.isprintable() (a no-break space, unassigned code points of
    planes 4 and 6). The first is the clean-clone run's (drawn as #123 under
    PYTHONHASHSEED=24), the second PYTHONHASHSEED=0's."""
    def change(name: str, check: bytes, kind: int, target: str, state: int,
               reason: bytes) -> tuple[str, dict]:
        return name, {"unhProbeId": b"fra-1", "unhProbeMission": b"FRA",
                      "unhCheckName": check, "unhCheckKind": kind,
                      "unhCheckTarget": target.encode(), "unhCheckState": state,
                      "unhCheckFailureReason": reason, "unhCheckLastChange": when}

    return (change("checkUp", b"TV", 2, "\u00d9\u00a0\U00042264t", 2, b""),
            change("checkDown", b"rKl0N", 4, "\U0006a80bA", 3, b"timeout"))


@pytest.mark.slow
async def test_fuzz_hostile_values_in_well_formed_notifications(collector):
    when = date_and_time(recent(120))
    later = date_and_time(recent(-3600))
    regressions = failed_once(when)
    notifications = generated(hostile_notifications(when, later), 600, regressions)
    assert notifications[:len(regressions)] == list(regressions)
    outcome = [expected_outcome(name, values, when) for name, values in notifications]
    assert outcome[:len(regressions)] == ["accepted"] * len(regressions)
    expected = Counter(outcome)
    targets = {values["unhCheckTarget"].decode()
               for (name, values), o in zip(notifications, outcome, strict=True)
               if o == "accepted" and name.startswith("check")}
    assert min(expected.values()) >= 40, expected  # every outcome well represented
    snmp = collector.app.snmp

    def outcomes() -> Counter:
        drops = snmp.drops.totals()
        return Counter(malformed=drops["malformed"], unknown_probe=drops["unknown_probe"],
                       accepted=sum(snmp.exporter.received.values()))

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for start in range(0, len(notifications), 25):
            burst = notifications[start:start + 25]
            for name, values in burst:
                s.sendto(v2c_trap("fra-secret", name, values), ("127.0.0.1", collector.port))
            # The receiver takes in each burst before the next: UDP has no backlog, and
            # every notification must be accounted for.
            for _ in range(2_000):  # up to 20 s on a loaded machine
                if outcomes().total() >= start + len(burst):
                    break
                await asyncio.sleep(0.01)
    assert outcomes() == expected, (outcomes(), expected)

    # Nothing invalid reached the store, the state or /metrics.
    rows = collector.store.open_intervals()
    assert rows and {r.mission for r in rows} == {"FRA"}
    for row in rows:
        assert IDENTIFIER.fullmatch(row.check_id), row
        assert row.state in {"up", "degraded", "down"}, row
        assert re.fullmatch(r"snmp checkDown \((\w+)\)|snmp checkUp", row.cause), row
    for _ in range(50):  # /metrics is rendered ahead: wait for the accepted ones
        metrics = await collector.metrics()
        received = sum(v for (n, _l), v in metrics.items()
                       if n == "unhindered_snmp_notifications_received_total")
        if received == expected["accepted"]:
            break
        await asyncio.sleep(0.1)
    assert received == expected["accepted"]
    for name, labels in metrics:
        labels = dict(labels)
        assert not any(CONTROL.search(v) for v in labels.values()), (name, labels)
        if "check" in labels:
            assert IDENTIFIER.fullmatch(labels["check"]) and labels["mission"] == "FRA"
        if name == "unhindered_check_info":  # each target as it was sent, exactly
            assert labels["target"] in targets, (name, labels)
    # Still serving: an inform is acknowledged and applied.
    status, err = await send("snmpinform", v3("fra1"), collector.port, "checkUp",
                             check_varbinds("fra-1", "FRA", "after-fuzz", UP, "", recent(1)))
    assert status == 0, err
    await collector.wait_state("FRA", "after-fuzz", "up")


async def test_a_receiver_port_in_use_stops_the_start_with_a_clear_error(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = CollectorConfig(snmp=SnmpSettings(receiver=ReceiverSettings(
            host="127.0.0.1", port=port)))
        server = TestServer(create_app(config, store), host="127.0.0.1")
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start_server()
        await server.close()
