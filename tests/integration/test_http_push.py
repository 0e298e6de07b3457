"""The probe's HTTP reporter against a real collector served on loopback."""

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from collector.config import CollectorConfig, IngestSettings, RetentionSettings
from collector.store.database import Store
from collector.web.app import create_app
from probes.config import CollectorSettings
from probes.outbox import Outbox
from probes.reporters.http_push import HttpPusher
from probes.selfmetrics import ProbeMetrics
from tests.support.storage import registered_since
from unhindered.measurement import IcmpFigures, IcmpMeasurement

# The results are dated from 2026-01-01: a collector that keeps raw results long enough to
# take them, from a probe registered before.
REGISTERED = datetime(2025, 12, 1, tzinfo=UTC)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def result(n: int, samples: int = 3, started_at: datetime | None = None) -> IcmpMeasurement:
    rtts = [0.01 + i * 1e-4 for i in range(samples)]
    return IcmpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="internet-icmp", target="127.0.0.1",
        started_at=started_at or datetime(2026, 1, 1, 0, n // 60, n % 60, tzinfo=UTC),
        duration_s=1, ok=True,
        figures=IcmpFigures(sent=samples, received=samples, loss_ratio=0, rtt_min_s=rtts[0],
                            rtt_median_s=rtts[len(rtts) // 2], rtt_mean_s=rtts[0],
                            rtt_max_s=rtts[-1], samples_s=rtts))


@pytest.fixture
async def collector(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    registered_since(store, REGISTERED.timestamp())
    config = CollectorConfig(ingest=IngestSettings(max_body_bytes=4096),
                             retention=RetentionSettings(raw_days=3650))
    server = TestServer(create_app(config, store), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/")), token, store
    await server.close()


def pusher_for(tmp_path, urls, token, **settings):
    outbox = Outbox(tmp_path / "outbox.sqlite")
    config = CollectorSettings(urls=urls, token=token, batch_max_size=3,
                               backoff_initial_s=0.01, backoff_max_s=0.04, **settings)
    return HttpPusher(config, outbox, "fra-1", "FRA", token), outbox


async def test_urls_are_tried_in_order_and_only_acked_rows_leave(tmp_path, collector):
    url, token, store = collector
    dead = f"http://127.0.0.1:{closed_port()}/"
    pusher, outbox = pusher_for(tmp_path, [dead, url], token)
    for n in range(7):
        await outbox.append(result(n))
    assert await pusher.push_once()
    assert [s for s, _ in await outbox.peek(10)] == [4, 5, 6, 7]  # the first batch of 3
    while (await outbox.stats()).depth:
        assert await pusher.push_once()
    assert [r.seq for r in store.results_of_probe("fra-1")] == list(range(1, 8))
    assert (await outbox.stats()).acked_through == 7
    outbox.close()


async def test_rejected_results_are_logged_counted_and_deleted(tmp_path, collector, caplog):
    """A result the collector rejects will never be stored: kept, it would be sent again
    for ever. The probe deletes it with the batch, and says so."""
    url, token, store = collector
    pusher, outbox = pusher_for(tmp_path, [url], token)
    for n, started_at in enumerate([None, REGISTERED - timedelta(days=30), None], 1):
        await outbox.append(result(n, started_at=started_at))
    with caplog.at_level(logging.WARNING, logger="probes.reporters.http_push"):
        assert await pusher.push_once()
    assert (await outbox.stats()).depth == 0
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 3]
    [line] = [r.getMessage() for r in caplog.records
              if r.name == "probes.reporters.http_push" and "rejected" in r.getMessage()]
    assert "rejected 1 result(s)" in line and "seq 2 before_registration" in line
    assert pusher.rejected == {"before_registration": 1}
    text = generate_latest(ProbeMetrics(pusher).registry).decode()
    assert ('unhindered_probe_rejected_results_total{reason="before_registration"} 1.0'
            in text.splitlines())
    outbox.close()


async def test_no_collector_keeps_everything_and_backs_off(tmp_path, collector):
    _url, token, _store = collector
    pusher, outbox = pusher_for(tmp_path, [f"http://127.0.0.1:{closed_port()}/"], token)
    await outbox.append(result(1))
    delays = []
    for _ in range(4):
        delays.append(pusher._backoff)
        assert not await pusher.push_once()
    assert delays == [0.01, 0.02, 0.04, 0.04]  # doubling, capped
    assert "Connection refused" in pusher.last_error
    assert [s for s, _ in await outbox.peek(10)] == [1]
    outbox.close()


async def test_wrong_token_deletes_nothing(tmp_path, collector):
    url, _token, store = collector
    pusher, outbox = pusher_for(tmp_path, [url], "uh1.not-a-real-token")
    await outbox.append(result(1))
    assert not await pusher.push_once()
    assert "401" in pusher.last_error and "unknown or revoked token" in pusher.last_error
    assert (await outbox.stats()).depth == 1
    assert store.results_of_probe("fra-1") == []
    outbox.close()


async def test_batch_too_large_is_split(tmp_path, collector):
    url, token, store = collector
    pusher, outbox = pusher_for(tmp_path, [url], token)
    for n in range(3):
        await outbox.append(result(n, samples=200))  # 2.7 kB each: 3 exceed 4 kB
    assert not await pusher.push_once()
    assert pusher.batch_size == 1
    while (await outbox.stats()).depth:
        assert await pusher.push_once()
    assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2, 3]
    outbox.close()


async def test_results_the_outbox_dropped_reach_the_collectors_metrics(tmp_path, collector):
    url, token, store = collector
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=128 * 1024)
    pusher = HttpPusher(CollectorSettings(urls=[url], token=token, batch_max_size=3), outbox,
                        "fra-1", "FRA", token)
    for n in range(600):
        await outbox.append(result(n))
    dropped = (await outbox.stats()).dropped
    assert dropped > 0  # a full bound dropped the oldest
    assert await pusher.push_once()
    assert store.results_of_probe("fra-1")[0].seq == dropped + 1
    line = ('unhindered_probe_outbox_dropped_results_total{mission="FRA",probe="fra-1"} '
            f"{dropped}.0")
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # /metrics is rendered in the background, within 2 s
            async with session.get(f"{url}metrics") as answer:
                if line in (await answer.text()).splitlines():
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"{line} not in the collector's /metrics")
    outbox.close()


async def test_a_confirmed_change_is_sent_at_once_not_after_the_batch_age(tmp_path, collector):
    url, token, store = collector
    pusher, outbox = pusher_for(tmp_path, [url], token, batch_max_age_s=3_600)
    running = asyncio.create_task(pusher.run())
    try:
        await outbox.append(result(1))
        pusher.wake()
        await asyncio.sleep(0.5)  # an ordinary result waits for the batch's age
        assert store.results_of_probe("fra-1") == []
        await outbox.append(result(2))
        pusher.wake(urgent=True)  # what the probe does once a change is confirmed
        for _ in range(100):
            if len(store.results_of_probe("fra-1")) == 2:
                break
            await asyncio.sleep(0.05)
        assert [r.seq for r in store.results_of_probe("fra-1")] == [1, 2]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        pusher.transport.close()
        outbox.close()
