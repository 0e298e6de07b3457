"""/metrics is rendered ahead of the scrapes while someone scrapes, and never older than
its bound; nobody scraping, nothing is rendered."""

import asyncio

from collector.metrics.exposition import RenderedMetrics


class CountingMetrics:
    """Stands in for Metrics: its text says how many times it was rendered."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.renders = 0
        self.changes = 0

    def version(self):
        return self.changes

    def render(self) -> bytes:
        self.renders += 1
        return f"render {self.renders}\n".encode()


async def test_scrapes_get_bytes_rendered_ahead_of_them():
    metrics = CountingMetrics()
    exposition = RenderedMetrics(metrics, refresh_s=0.05, max_age_s=0.3, keep_warm_s=0.4)
    try:
        plain, gzipped = await exposition.get()  # nothing yet: this scrape waits
        assert plain == b"render 1\n" and gzipped.startswith(b"\x1f\x8b")
        for _ in range(4):  # the fleet keeps changing
            metrics.changes += 1
            await asyncio.sleep(0.06)
        assert metrics.renders >= 3  # the refresher kept rendering while scraped
        before = metrics.renders
        plain, _ = await exposition.get()
        assert metrics.renders == before  # served at once, from the newest bytes
        assert plain == f"render {before}\n".encode()
        # Nobody scrapes for longer than keep_warm_s: the rendering stops...
        for _ in range(10):
            metrics.changes += 1
            await asyncio.sleep(0.06)
        idle = metrics.renders
        metrics.changes += 1
        await asyncio.sleep(0.4)
        assert metrics.renders == idle
        # ...and the next scrape, finding bytes too old, waits for a fresh render.
        plain, _ = await exposition.get()
        assert plain == f"render {idle + 1}\n".encode()
    finally:
        exposition.close()


async def test_concurrent_scrapes_share_one_render():
    metrics = CountingMetrics()
    exposition = RenderedMetrics(metrics, refresh_s=10, max_age_s=5)
    try:
        bodies = await asyncio.gather(*(exposition.get() for _ in range(5)))
        assert metrics.renders == 1
        assert {plain for plain, _ in bodies} == {b"render 1\n"}
    finally:
        exposition.close()


async def test_an_unchanged_fleet_is_not_rendered_again_until_unchanged_s():
    metrics = CountingMetrics()
    exposition = RenderedMetrics(metrics, refresh_s=0.05, max_age_s=0.3, unchanged_s=1.0)
    try:
        await exposition.get()
        await asyncio.sleep(0.3)
        assert metrics.renders == 1  # nothing changed: the bytes stand
        plain, _ = await exposition.get()
        assert plain == b"render 1\n"
        await asyncio.sleep(0.9)  # past unchanged_s: the collector's own figures age
        assert metrics.renders >= 2
        before = metrics.renders
        metrics.changes += 1
        await asyncio.sleep(0.2)
        assert metrics.renders > before
    finally:
        exposition.close()
