"""Checks have a lifecycle (issue 12, case 7): a check the probe no longer runs is retired
from the time its check list changed. It stays in the history, shown as retired, and
counts no more for access, silence, alerts or reports; a round of it after that time (the
check added back) revives it. On SQLite and PostgreSQL.

The bug it fixes: a check removed from a probe's config stayed `unknown` for good, the
mission's access became `unknown`, MissionProbeSilent mailed the mission, and the removed
check was named in later outages and reported with 0 % uptime."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.config import AlertingSettings, CollectorConfig
from collector.report.compute import compute
from collector.report.period import period_of
from collector.report.policy import CountingPolicy
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from collector.store.schema import access_intervals
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from collector.web.ingest import parse_batch
from tests.integration.test_ingest import post
from tests.integration.test_store import T0, batch_of, down_at, history, ingest
from tests.support import scrape_until
from tests.support.storage import registered_since
from tests.unit.test_measurement import icmp
from unhindered.measurement import CheckList

INTERNET, DOCS = "internet-icmp", "docs-icmp"


@pytest.fixture
def timelines(any_store):
    return Timelines(any_store, lambda mission: Policy())


def two_checks(store, timelines, until=100, docs_rounds=None, docs_ok=True):
    """Both checks every 10 s from 0 to `until`; the documents check alone in its group."""
    ingest(store, timelines, batch_of([(t, True) for t in range(0, until + 1, 10)],
                                      check=INTERNET))
    rounds = docs_rounds if docs_rounds is not None else range(0, until + 1, 10)
    ingest(store, timelines, batch_of([(t, docs_ok) for t in rounds], check=DOCS,
                                      group="documents", first_seq=1000))


def removed(timelines, since, ids=(INTERNET,), probe="fra-1"):
    """The probe says (in a batch's head) that from `since` it runs only `ids`."""
    return timelines.note_check_list(probe, "FRA", list(ids), T0 + since)


def test_a_removed_check_is_retired_not_unknown(any_store, timelines):
    seen = []
    timelines.observers.append(lambda *change: seen.append(change))
    two_checks(any_store, timelines)
    # The collector heard nothing of the documents check for 3 intervals before the batch
    # saying it was removed at 105 arrived: unknown, and so the mission's access.
    ingest(any_store, timelines, batch_of([(t, True) for t in range(110, 201, 10)],
                                          check=INTERNET, first_seq=100))
    timelines.tick(T0 + 200)
    assert timelines.access[("FRA", "*")][0] == "unknown"

    assert removed(timelines, 105) == {"FRA"}
    assert history(any_store, DOCS) == [(0, 105, "up"), (105, None, "retired")]
    # Not a part of the mission's access from then on: the unknown period is gone.
    assert history(any_store, "*", table=access_intervals) == [(0, None, "up")]
    assert history(any_store, "documents", table=access_intervals) == [
        (0, 105, "up"), (105, None, "retired")]
    assert timelines.access[("FRA", "*")] == ("up", T0)
    assert seen[-2:] == [("FRA", "documents", "retired", T0 + 105), ("FRA", "*", "up", T0)]
    # Never silent, never in the fleet-wide view.
    assert timelines.tick(T0 + 10_000) == {"FRA"}  # the internet check falls silent
    assert history(any_store, DOCS) == [(0, 105, "up"), (105, None, "retired")]
    assert [c for c in timelines.check_states() if c[3] == "retired"] == []
    assert {(m, g) for m, g, _t, _s in timelines.check_states()} == {("FRA", "internet")}
    # The same list again (every batch carries it) changes nothing.
    assert removed(timelines, 105) == set()


def test_rounds_from_before_the_removal_still_count(any_store, timelines):
    """The list arrives before the backlog of the removed check's last rounds (a probe
    sends its oldest results first, in several batches): they are stored and counted up to
    the removal, which stays where it was."""
    two_checks(any_store, timelines, docs_rounds=range(0, 51, 10))
    assert removed(timelines, 105) == {"FRA"}
    # Silent from 80 (its last round, 50, plus 3 intervals) until the removal.
    assert history(any_store, DOCS) == [(0, 80, "up"), (80, 105, "unknown"),
                                        (105, None, "retired")]
    # Its rounds from 60 to 100 come: they failed, so it was down from between its last
    # good round (50) and the first failure (60) to the removal.
    ingest(any_store, timelines, batch_of([(t, False) for t in range(60, 101, 10)],
                                          check=DOCS, group="documents", first_seq=2000))
    down = down_at(50, 60)
    assert history(any_store, DOCS) == [(0, down, "up"), (down, 105, "down"),
                                        (105, None, "retired")]
    assert history(any_store, "*", table=access_intervals) == [
        (0, down, "up"), (down, 105, "down"), (105, None, "up")]


def test_a_check_added_back_is_revived_by_its_next_round(any_store, timelines):
    two_checks(any_store, timelines)
    removed(timelines, 105)
    ingest(any_store, timelines, batch_of([(500, False)], check=DOCS, group="documents",
                                          first_seq=3000))
    assert history(any_store, DOCS) == [(0, 105, "up"), (105, 500, "retired"),
                                        (500, None, "down")]
    assert timelines.machines[("FRA", DOCS)].state == "down"
    assert history(any_store, "documents", table=access_intervals) == [
        (0, 105, "up"), (105, 500, "retired"), (500, None, "down")]
    # Counted again: silence makes it unknown, and it is in the fleet-wide view.
    assert ("FRA", "documents", "198.19.0.1", "down") in set(timelines.check_states())
    timelines.tick(T0 + 600)
    assert history(any_store, DOCS)[-1] == (530, None, "unknown")


def test_the_retirement_survives_a_restart_and_a_replay(any_store, timelines):
    two_checks(any_store, timelines)
    removed(timelines, 105)
    expected = [(0, 105, "up"), (105, None, "retired")]
    restarted = Timelines(any_store, lambda mission: Policy())
    restarted.load(any_store.latest_per_check())
    assert restarted.machines[("FRA", DOCS)].state == "retired"
    assert history(any_store, DOCS) == expected
    assert restarted.tick(T0 + 10_000) == {"FRA"}
    assert history(any_store, DOCS) == expected
    # A late round from before the removal replays the check's history: the retirement
    # is replayed with it.
    ingest(any_store, restarted, batch_of([(95, True)], check=DOCS, group="documents",
                                          first_seq=4000))
    assert history(any_store, DOCS) == expected
    # ... and the probe's list a restarted collector hears changes nothing more.
    assert removed(restarted, 105) == set()


def test_a_round_after_the_list_time_moves_the_retirement_to_it(any_store, timelines):
    """A confirmation round already under way when the probe reloaded its config."""
    two_checks(any_store, timelines)
    ingest(any_store, timelines, batch_of([(107, True)], check=DOCS, group="documents",
                                          first_seq=5000))
    removed(timelines, 105)
    assert history(any_store, DOCS) == [(0, 107, "up"), (107, None, "retired")]


def test_only_the_probe_that_ran_a_check_retires_it(any_store, timelines):
    """Two probes at a mission: one's list does not name the other's checks."""
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 101, 10)],
                                          check=INTERNET))
    ingest(any_store, timelines, batch_of([(t, True) for t in range(0, 101, 10)], check=DOCS,
                                          group="documents", probe="fra-2", outbox="b" * 32))
    assert removed(timelines, 105, probe="fra-1") == set()
    assert history(any_store, DOCS) == [(0, None, "up")]
    assert removed(timelines, 105, ids=(), probe="fra-2") == {"FRA"}
    assert history(any_store, DOCS) == [(0, 105, "up"), (105, None, "retired")]
    assert history(any_store, INTERNET) == [(0, None, "up")]


def test_a_mission_whose_every_check_is_retired_is_retired(any_store, timelines):
    seen = []
    timelines.observers.append(lambda *change: seen.append(change))
    two_checks(any_store, timelines)
    assert removed(timelines, 105, ids=()) == {"FRA"}
    assert history(any_store, "*", table=access_intervals) == [(0, 105, "up"),
                                                               (105, None, "retired")]
    assert timelines.access[("FRA", "*")] == ("retired", T0 + 105)
    assert ("FRA", "*", "retired", T0 + 105) in seen
    # A check renamed: the old id retired, the new one reporting from its first round.
    ingest(any_store, timelines, batch_of([(110, True)], check="internet-icmp-v4",
                                          first_seq=6000))
    assert history(any_store, "*", table=access_intervals) == [
        (0, 105, "up"), (105, 110, "retired"), (110, None, "up")]


# --- through the real HTTP ingest, as a probe reports it ---

def measured(seq: int, check: str, group: str, at: float) -> dict:
    # The internet check's interval is long enough for it never to fall silent here.
    return icmp(seq=seq, check_id=check, group=group, interval_s=10 if check == DOCS else 60,
                started_at=datetime.fromtimestamp(at, UTC).isoformat(),
                figures={"sent": 1, "received": 1, "loss_ratio": 0, "rtt_min_s": 0.02,
                         "rtt_median_s": 0.02, "rtt_mean_s": 0.02, "rtt_max_s": 0.02,
                         "samples_s": [0.02]})


async def scrape_without(client, text: str, within_s: float = 10.0) -> str:
    """/metrics once a render no longer holds `text` (renders are up to 2 s ahead)."""
    deadline = time.monotonic() + within_s
    while True:
        metrics = await (await client.get("/metrics")).text()
        if text not in metrics or time.monotonic() > deadline:
            return metrics
        await asyncio.sleep(0.2)


class Probe:
    """What a probe sends: batches of rounds, each with its check list."""

    def __init__(self, client, token: str) -> None:
        self.client, self.token, self.seq = client, token, 0

    async def push(self, rounds: list[tuple[str, str, float]], runs: list[str],
                   since: float) -> None:
        measurements = []
        for check, group, at in sorted(rounds, key=lambda r: r[2]):
            self.seq += 1
            measurements.append(measured(self.seq, check, group, at))
        body = {"protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
                "backlog": 0, "measurements": measurements,
                "checks": {"since": datetime.fromtimestamp(since, UTC).isoformat(),
                           "ids": runs}}
        status, ack = await post(self.client, body, self.token)
        assert (status, ack["stored"]) == (200, len(measurements)), ack


def every_10s(check: str, group: str, start: float, end: float):
    return [(check, group, start + t) for t in range(0, int(end - start) + 1, 10)]


@pytest.fixture
async def served(any_store):
    """The collector's web app on a real store, with direct alerts configured (to a port
    where nothing listens: what matters here is what the pusher wants to fire)."""
    token = any_store.add_probe("fra-1", "FRA")
    reader = any_store.add_reader("tests")
    registered_since(any_store, time.time() - 86_400)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = CollectorConfig(alerting=AlertingSettings(alertmanager_url=nowhere))
    app = create_app(config, any_store)
    async with TestClient(TestServer(app)) as client:
        yield client, app[COLLECTOR], Probe(client, token), {"Authorization": f"Bearer {reader}"}


async def test_a_check_removed_at_the_probe_is_retired_end_to_end(any_store, served):
    client, collector, probe, read = served
    base = time.time() - 200
    both = [INTERNET, DOCS]
    # Both checks run for 80 s; then the probe's config is reloaded without the documents
    # check (at base + 85), and the internet check goes on.
    await probe.push([*every_10s(INTERNET, "internet", base, base + 80),
                      *every_10s(DOCS, "documents", base, base + 80)], both, base - 5)
    period = period_of(start=datetime.fromtimestamp(base - 86_400, UTC).date().isoformat(),
                       end=datetime.fromtimestamp(base + 86_400, UTC).date().isoformat())
    inventory = collector.inventory
    before = compute(any_store, inventory, period, CountingPolicy(), {"FRA"}, now=base + 85)
    await probe.push(every_10s(INTERNET, "internet", base + 90, base + 190), [INTERNET],
                     base + 85)
    # The silence check (every 2 s), once the collector has listened for the allowance
    # (30 s): the documents check, unheard of since base + 80, would be unknown.
    await collector.in_db(collector.timelines.tick, time.time() + 35)

    # The mission's access is the internet check's: up, not unknown.
    answer = await (await client.get("/api/v1/missions/FRA", headers=read)).json()
    assert answer["access"] == "up"
    assert [g["group"] for g in answer["groups"] if g["state"] == "retired"] == ["documents"]
    assert {c["check_id"]: c["state"] for c in answer["checks"]} == {INTERNET: "up",
                                                                     DOCS: "retired"}
    intervals = await (await client.get(
        "/api/v1/intervals", headers=read, params={
            "mission": "FRA", "check": DOCS,
            "from": datetime.fromtimestamp(base - 60, UTC).isoformat(),
            "to": datetime.fromtimestamp(base + 300, UTC).isoformat()})).json()
    assert [(i["state"], i["cause"].split(" (")[0]) for i in intervals["items"]] == [
        ("up", "first result after no data: loss 0 %, RTT 20.0 ms"),
        ("retired", "probe fra-1 no longer runs this check")]
    # No alert is wanted: neither silence nor an outage.
    assert collector.pusher is not None
    assert [dict(k)["alertname"] for k in collector.pusher._wanted] == []

    # /metrics: the retired check's series end; nothing a rule could fire on.
    metrics = await scrape_without(client, f'check="{DOCS}"')
    assert 'unhindered_mission_access_state{group="*",mission="FRA",state="up"} 1' in metrics
    assert 'group="documents"' not in metrics
    assert f'unhindered_check_state{{check="{INTERNET}",mission="FRA",state="up"}} 1.0' \
        in metrics

    # The status page shows it retired, and names it in no outage.
    page = await (await client.get("/status/FRA", params={"lang": "en"})).text()
    row = page[page.index(f'<span class="code">{DOCS}</span>') - 200:][:1200]
    assert 'class="row-retired"' in row and "state-retired" in row and "retired" in row
    assert "row-unknown" not in page and "row-down" not in page  # no outage, no cause
    french = await (await client.get("/status/FRA", params={"lang": "fr"})).text()
    assert "retiré" in french

    # The report: its uptime before the removal stands; the time since is not counted.
    after = compute(any_store, inventory, period, CountingPolicy(), {"FRA"})
    [docs_before] = [c for c in before.missions[0].checks if c.check_id == DOCS]
    [docs_after] = [c for c in after.missions[0].checks if c.check_id == DOCS]
    assert docs_before.figures.uptime == docs_after.figures.uptime == 1.0
    assert docs_after.figures.seconds == pytest.approx(docs_before.figures.seconds)
    assert docs_after.figures.seconds["up"] == pytest.approx(85)
    assert after.missions[0].figures.seconds["unknown"] == 0
    assert after.missions[0].figures.uptime == 1.0

    # The documents check is added back (a reload at base + 195): revived by its round.
    await probe.push([(INTERNET, "internet", base + 196), (DOCS, "documents", base + 197)],
                     both, base + 195)
    answer = await (await client.get("/api/v1/missions/FRA", headers=read)).json()
    assert {c["check_id"]: c["state"] for c in answer["checks"]} == {INTERNET: "up",
                                                                     DOCS: "up"}
    assert [g["state"] for g in answer["groups"]] == ["up", "up"]
    assert [r.state for r in any_store.intervals("FRA", DOCS)] == ["up", "retired", "up"]
    metrics = await scrape_until(client, f'check="{DOCS}",mission="FRA",state="up"}} 1.0')
    assert f'unhindered_check_state{{check="{DOCS}",mission="FRA",state="up"}} 1.0' in metrics


def test_a_batch_read_result_by_result_keeps_its_check_list():
    """One bad result sends the batch the slow way (collector/web/ingest.py): the check
    list comes through all the same, as read."""
    body = {"protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
            "measurements": [icmp(seq=1), icmp(seq=2, duration_s=-1)],
            "checks": {"since": "2026-01-15T10:00:00Z", "ids": [INTERNET]}}
    parsed = parse_batch(json.dumps(body).encode())
    assert [r.seq for r in parsed.rejected] == [2]
    assert parsed.batch.checks == CheckList(since=datetime(2026, 1, 15, 10, tzinfo=UTC),
                                            ids=[INTERNET])


def test_a_check_list_that_breaks_the_rules_is_ignored_not_the_batch(caplog):
    """It only retires checks: refused, the batch would be sent again for ever."""
    body = {"protocol": 1, "probe_id": "fra-1", "mission": "FRA", "outbox_id": "a" * 32,
            "measurements": [icmp(seq=1)],
            "checks": {"since": "2026-01-15T10:00:00", "ids": [INTERNET, INTERNET]}}
    parsed = parse_batch(json.dumps(body).encode())
    assert ([m.seq for m in parsed.batch.measurements], parsed.rejected) == ([1], [])
    assert parsed.batch.checks is None
    assert "ignored the check list of a batch from probe 'fra-1'" in caplog.text
    assert "listed twice" in caplog.text and "timezone" in caplog.text
