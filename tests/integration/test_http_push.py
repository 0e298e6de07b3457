"""The probe's HTTP reporter against a real collector served on loopback."""

import socket
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestServer

from collector.config import CollectorConfig, IngestSettings
from collector.store.database import Store
from collector.web.app import create_app
from probes.config import CollectorSettings
from probes.outbox import Outbox
from probes.reporters.http_push import HttpPusher
from unhindered.measurement import IcmpFigures, IcmpMeasurement


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def result(n: int, samples: int = 3) -> IcmpMeasurement:
    rtts = [0.01 + i * 1e-4 for i in range(samples)]
    return IcmpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="internet-icmp", target="127.0.0.1",
        started_at=datetime(2026, 1, 1, 0, n // 60, n % 60, tzinfo=UTC), duration_s=1, ok=True,
        figures=IcmpFigures(sent=samples, received=samples, loss_ratio=0, rtt_min_s=rtts[0],
                            rtt_median_s=rtts[len(rtts) // 2], rtt_mean_s=rtts[0],
                            rtt_max_s=rtts[-1], samples_s=rtts))


@pytest.fixture
async def collector(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    config = CollectorConfig(ingest=IngestSettings(max_body_bytes=4096))
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
