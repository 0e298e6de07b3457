"""Heartbeats (docs/protocol.md#heartbeat) and the probe-silence rule (docs/states.md): a
probe that sends heartbeats is known to be alive between its rounds, so that when it falls
silent its checks are unknown within `states.probe_silent_s`, not after their own silent
allowance. The rule with the real Timelines and AlertPusher on SQLite and PostgreSQL; the
wire with the probe's real HttpPusher against a real collector app on loopback. The cut
itself, with real processes in the network lab: tests/netlab/test_heartbeat.py."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from collector.alerting.amapi import iso
from collector.alerting.push import AlertPusher
from collector.config import CollectorConfig
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from collector.store.database import Store
from collector.store.schema import access_intervals
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from probes.config import CollectorSettings
from probes.outbox import Outbox
from probes.reporters.http_push import HttpPusher
from tests.integration.test_collector_restart import NO_ALERTMANAGER, silent_alerts
from tests.integration.test_http_push import result
from tests.integration.test_store import T0, batch_of, down_at, history, ingest, up_at

PROBE = "fra-1"
POLICY = Policy(probe_silent_s=20)


def rounds(rows: list[tuple[float, bool]], interval_s: float, first_seq: int = 1):
    batch = batch_of(rows, first_seq=first_seq)
    return batch.model_copy(update={"measurements": [
        m.model_copy(update={"interval_s": interval_s}) for m in batch.measurements]})


@pytest.fixture
def fleet(any_store):
    timelines = Timelines(any_store, lambda _mission: POLICY)
    pusher = AlertPusher(NO_ALERTMANAGER, check_states=timelines.check_states)
    timelines.observers.append(pusher.observe)
    yield any_store, timelines, pusher
    pusher.close()


def beats(timelines: Timelines, start: float, end: float, every: float = 10) -> None:
    t = start
    while t <= end:
        timelines.hear(PROBE, T0 + t, heartbeat=True)
        t += every


def test_heartbeats_keep_a_long_interval_probe_heard_and_their_end_is_silence(fleet):
    store, timelines, pusher = fleet
    # A check every 300 s: its own allowance is 900 s; heartbeats every 10 s between.
    ingest(store, timelines, rounds([(0, True), (300, True)], 300))
    timelines.hear(PROBE, T0 + 300)
    beats(timelines, 310, 400)
    for now in range(301, 421, 5):
        assert timelines.tick(T0 + now) == set(), now
    # Cut after the heartbeat of 400: unknown from 420, decided just after it.
    assert timelines.tick(T0 + 421) == {"FRA"}
    assert history(store) == [(0, 420, "up"), (420, None, "unknown")]
    assert history(store, "*", table=access_intervals) == [(0, 420, "up"), (420, None, "unknown")]
    [alert] = silent_alerts(pusher)
    assert alert["startsAt"] == iso(T0 + 420)
    cause = store.intervals("FRA", "internet-icmp")[-1].cause
    assert cause == "nothing heard from the probe for 20 s (no heartbeat, no results)"


def test_the_backlog_after_the_cut_rewrites_the_unknown_as_measured(fleet):
    store, timelines, pusher = fleet
    ingest(store, timelines, rounds([(0, True), (300, True)], 300))
    beats(timelines, 310, 400)
    assert timelines.tick(T0 + 421) == {"FRA"}
    # The link is back: the probe's rounds of the cut (a failure and its two confirmation
    # rounds) arrive, then the rounds after it.
    ingest(store, timelines, rounds([(405, False), (407, False), (409, False),
                                     (600, True), (602, True)], 300, first_seq=3))
    timelines.hear(PROBE, T0 + 610)
    # Each change placed between the rounds that show it (docs/states.md): the cut
    # between 300 and 405, the end between 409 and 600.
    down, up = down_at(300, 405), up_at(409, 600)
    assert history(store) == [(0, down, "up"), (down, up, "down"), (up, None, "up")]
    assert history(store, "*", table=access_intervals) == [
        (0, down, "up"), (down, up, "down"), (up, None, "up")]
    assert silent_alerts(pusher) == []


def test_no_round_in_the_silence_leaves_no_unknown_once_rounds_come(fleet):
    """A probe that fell silent for less than its checks' own allowance (a check every
    300 s, silent from 400 to 600): its rounds say nothing was missed, and the replay from
    the guessed unknown's start says so too."""
    store, timelines, _pusher = fleet
    ingest(store, timelines, rounds([(0, True), (300, True)], 300))
    beats(timelines, 310, 400)
    assert timelines.tick(T0 + 421) == {"FRA"}
    ingest(store, timelines, rounds([(600, True)], 300, first_seq=3))
    assert history(store) == [(0, None, "up")]
    assert history(store, "*", table=access_intervals) == [(0, None, "up")]


def test_a_probe_without_heartbeats_keeps_the_per_check_rule(fleet):
    """An older probe (or an SNMP-polled one): heard by its batches only, never by a
    heartbeat, so only its checks' own allowance makes them unknown."""
    store, timelines, pusher = fleet
    ingest(store, timelines, rounds([(0, True), (300, True)], 300))
    timelines.hear(PROBE, T0 + 300)
    for now in (321, 500, 1199):
        assert timelines.tick(T0 + now) == set()
    assert timelines.tick(T0 + 1201) == {"FRA"}  # 3 intervals of 300 s after the last round
    assert history(store) == [(0, 1200, "up"), (1200, None, "unknown")]
    assert silent_alerts(pusher)[0]["startsAt"] == iso(T0 + 1200)


def test_a_check_whose_rounds_stop_is_silent_while_heartbeats_come(fleet):
    store, timelines, _pusher = fleet
    ingest(store, timelines, rounds([(t, True) for t in range(0, 101, 10)], 10))
    beats(timelines, 105, 200, every=5)
    assert timelines.tick(T0 + 129) == set()
    assert timelines.tick(T0 + 131) == {"FRA"}
    assert history(store) == [(0, 130, "up"), (130, None, "unknown")]
    cause = store.intervals("FRA", "internet-icmp")[-1].cause
    assert cause.startswith("no results for 3 intervals")


def test_a_restart_forgets_heartbeats_until_the_next_one(fleet):
    """The collector's restart must not make every probe silent: until it hears a probe's
    heartbeat again, that probe has only the per-check rule (and its allowance counts from
    the restart)."""
    store, timelines, _pusher = fleet
    ingest(store, timelines, rounds([(0, True), (300, True)], 300))
    beats(timelines, 310, 400)
    restarted = Timelines(store, lambda _mission: POLICY)
    restarted.load(store.latest_per_check())
    restarted.listening_since = T0 + 1000
    assert restarted.tick(T0 + 1100) == set()  # silent since 400, but no heartbeat heard
    restarted.hear(PROBE, T0 + 1150, heartbeat=True)
    assert restarted.tick(T0 + 1169) == set()
    assert restarted.tick(T0 + 1171) == {"FRA"}
    assert history(store)[-1] == (1170, None, "unknown")


@pytest.fixture
async def served(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    store.migrate()
    token = store.add_probe(PROBE, "FRA")
    server = TestServer(create_app(CollectorConfig(), store), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/")), token, server.app[COLLECTOR]
    await server.close()


async def test_the_heartbeat_route_hears_the_probe_of_the_token(served):
    url, token, collector = served
    beat = f"{url.rstrip('/')}/api/v1/heartbeat"
    async with aiohttp.ClientSession() as session:
        async with session.post(beat, data=b'{"backlog":3}',
                                headers={"Authorization": "Bearer nope"}) as answer:
            assert answer.status == 401
        assert PROBE not in collector.timelines.heartbeating
        bearer = {"Authorization": f"Bearer {token}"}
        async with session.post(beat, data=b'{"backlog":"3"}', headers=bearer) as answer:
            assert answer.status == 422
            assert "backlog" in (await answer.json())["error"]
        before = time.time()
        async with session.post(beat, data=b'{"backlog":3}', headers=bearer) as answer:
            assert answer.status == 204
        assert PROBE in collector.timelines.heartbeating
        assert collector.timelines.heard[PROBE] >= before


async def test_the_probe_beats_only_when_nothing_else_was_sent(served, tmp_path):
    url, token, collector = served
    outbox = Outbox(tmp_path / "outbox.sqlite")
    settings = CollectorSettings(urls=[url], token=token, batch_max_age_s=0, heartbeat_s=1)
    pusher = HttpPusher(settings, outbox, PROBE, "FRA", token)
    running = asyncio.create_task(pusher.run())
    try:
        # A result every 0.4 s, each pushed at once: the probe is heard, no heartbeat.
        for n in range(6):
            await outbox.append(result(n, started_at=datetime.now(UTC)))
            pusher.wake()
            await asyncio.sleep(0.4)
        assert pusher.heartbeats == 0
        assert (await outbox.stats()).depth == 0
        assert PROBE not in collector.timelines.heartbeating
        # Idle: a heartbeat every second, on the one kept connection.
        await asyncio.sleep(2.6)
        assert 2 <= pusher.heartbeats <= 3
        assert PROBE in collector.timelines.heartbeating
        assert time.time() - collector.timelines.heard[PROBE] < 1.2
        assert pusher.transport.connections_opened == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        pusher.transport.close()
        outbox.close()
