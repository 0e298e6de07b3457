"""net-snmp's snmptrap and snmpinform against the collector's receiver, served on loopback
with its web app: accepted notifications become stored states; every kind of bad message
is dropped, counted, and the receiver goes on serving."""

from __future__ import annotations

import asyncio
import random
import socket
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from collector.config import CollectorConfig
from collector.snmp.settings import ReceiverSettings, SnmpSettings, TrapSender
from collector.store.database import Store
from collector.store.schema import access_intervals
from collector.web.app import create_app
from tests.support import free_port
from tests.support.netsnmp import check_varbinds, dotted, send, v2c
from tests.support.snmp import AUTH_KEY, PRIV_KEY, v3
from unhindered.snmp.settings import SnmpUser

DOWN, UP = 3, 1
CHECK = "internet-icmp"


class Running:
    def __init__(self, url: str, port: int, store: Store) -> None:
        self.url, self.port, self.store = url, port, store

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
    yield Running(str(server.make_url("/")), port, store)
    await server.close()


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
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, packet in enumerate(packets):
            s.sendto(packet, ("127.0.0.1", collector.port))
            if n % 20 == 0:
                await asyncio.sleep(0.02)  # let the receiver keep up: UDP has no backlog

    def delta(after: dict, name: str) -> float:
        return sum(v - before.get(k, 0) for k, v in after.items() if k[0] == name)

    async def counts() -> tuple[float, float]:
        after = await collector.metrics()
        return (delta(after, "unhindered_snmp_dropped_total"),
                delta(after, "unhindered_snmp_notifications_received_total"))

    # /metrics is rendered ahead and may be a few seconds behind: wait until the counts
    # account for the packets, or settle for 20 s.
    seen: tuple = ()
    for attempt in range(40):
        previous, seen = seen, await counts()
        if sum(seen) >= len(packets) * 0.98 or (seen == previous and attempt > 20):
            break
        await asyncio.sleep(0.5)
    dropped, accepted = seen
    # Each packet is dropped and counted, or (a mutation that only changed a value: v2c
    # has no integrity check) accepted. Loopback UDP may lose a few under load.
    assert len(packets) * 0.98 <= dropped + accepted <= len(packets), (dropped, accepted)
    assert dropped >= len(packets) * 2 / 3 * 0.98  # the random and truncated ones at least
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
