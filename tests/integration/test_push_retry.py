"""Issue 12, case 10 (the probe's side): after every collector URL failed, the probe backs
off (doubling, full jitter), but a round that succeeds meanwhile is evidence that the way
to the centre may be back, and ends the wait early; never sooner than
`retry_on_success_s` after the failure, so a healthy probe facing a dead collector tries
at most about once per that time. Against a real collector on 127.0.0.1 that is down,
then returns."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiohttp.test_utils import TestServer

from collector.config import CollectorConfig, RetentionSettings
from collector.store.database import Store
from collector.web.app import create_app
from probes.config import CollectorSettings
from probes.outbox import Outbox
from probes.reporters import http_push
from probes.reporters.http_push import RETRY_ON_SUCCESS_S, HttpPusher
from tests.integration.test_http_push import REGISTERED, closed_port, result
from tests.support.storage import registered_since

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def worst_jitter(monkeypatch):
    """Every back-off draws its longest delay: what the old rule could wait at worst."""
    monkeypatch.setattr(http_push.random, "uniform", lambda low, high: high)


def pusher_for(tmp_path, port: int, token: str) -> tuple[HttpPusher, Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    # A back-off already at its 60 s ceiling, as after a few minutes without the centre.
    settings = CollectorSettings(urls=[f"http://127.0.0.1:{port}/"], token=token,
                                 batch_max_size=50, batch_max_age_s=0,
                                 backoff_initial_s=60, backoff_max_s=60)
    return HttpPusher(settings, outbox, "fra-1", "FRA", token), outbox


async def record(pusher: HttpPusher, outbox: Outbox, n: int, ok: bool = True) -> None:
    """As Probe._record: the result is stored, then the reporter woken."""
    m = result(n)
    if not ok:
        m = m.model_copy(update={"ok": False})
    await outbox.append(m)
    pusher.wake(success=m.ok)


@contextlib.asynccontextmanager
async def running(pusher: HttpPusher, outbox: Outbox):
    """The reporter's loop, for the block; stopped and its outbox closed after it."""
    runner = asyncio.create_task(pusher.run())
    try:
        yield
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        outbox.close()


async def wait_until(condition, within_s: float) -> float | None:
    """When the condition first held (time.monotonic()), or None."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


async def test_a_returning_collector_gets_the_backlog_after_the_next_good_round(
        tmp_path, worst_jitter):
    store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    registered_since(store, REGISTERED.timestamp())
    port = closed_port()  # the collector is down: nothing listens there yet
    pusher, outbox = pusher_for(tmp_path, port, token)
    for n in range(20):  # the backlog kept while the centre was away
        await outbox.append(result(n))
    server = TestServer(create_app(CollectorConfig(
        retention=RetentionSettings(raw_days=3650)), store), host="127.0.0.1", port=port)
    try:
        async with running(pusher, outbox):
            failed = await wait_until(lambda: pusher.failures >= 1, 10)
            assert failed is not None, "the first push did not fail"
            await asyncio.sleep(1)
            await server.start_server()  # the collector returns, 1 s after the probe's try
            await asyncio.sleep(1)
            await record(pusher, outbox, 20)  # the probe's next round succeeds
            arrived = await wait_until(
                lambda: len(store.results_of_probe("fra-1")) == 21, RETRY_ON_SUCCESS_S + 10)
            assert arrived is not None, (
                f"the backlog did not arrive within {RETRY_ON_SUCCESS_S + 10:g} s of the failure "
                "(the back-off was 60 s)")
            # The next try came once the floor had passed since the failure, not before.
            assert RETRY_ON_SUCCESS_S - 0.2 <= arrived - failed <= RETRY_ON_SUCCESS_S + 3
            assert pusher.failures == 1
    finally:
        await server.close()
        store.close()


async def test_a_dead_collector_is_tried_at_most_once_per_floor(tmp_path, worst_jitter):
    pusher, outbox = pusher_for(tmp_path, closed_port(), "uh1.token")
    pusher.retry_on_success_s = 1.0
    await outbox.append(result(0))
    async with running(pusher, outbox):
        began = time.monotonic()
        n = 1
        while time.monotonic() - began < 4.5:  # good rounds every 0.1 s, the centre away
            await record(pusher, outbox, n)
            n += 1
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - began
        # The first try, then one a second at most (the back-off alone: none in 60 s).
        assert 3 <= pusher.failures <= 1 + elapsed / pusher.retry_on_success_s, (
            pusher.failures, elapsed)


async def test_failed_rounds_are_no_evidence(tmp_path, worst_jitter):
    pusher, outbox = pusher_for(tmp_path, closed_port(), "uh1.token")
    pusher.retry_on_success_s = 0.2
    await outbox.append(result(0))
    async with running(pusher, outbox):
        await wait_until(lambda: pusher.failures >= 1, 10)
        for n in range(1, 20):  # the link is still cut: every round fails
            await record(pusher, outbox, n, ok=False)
            await asyncio.sleep(0.1)
        assert pusher.failures == 1
