"""How the collector keeps its event loop responsive: the GIL hand-over interval, the
garbage collector's pauses, and a probe that measures how late the loop runs.

The loop shares one interpreter with the threads that render /metrics, parse batches and
talk to the database. Two things held it up for tens of milliseconds (commit 3778325):
Python's default 5 ms GIL switch interval, which the loop waits out at every hand-over
while a render runs, and the garbage collector's full passes over the whole heap (50 to
200 ms with a large fleet in memory), which stop every thread.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0005
LOOP_LAG_PERIOD_S = 0.05
# Long-lived state (checks, machines, cached lines) is moved out of the collector's reach
# this often, so its passes only walk what is new...
GC_FREEZE_EVERY_S = 5.0
# ...and this often everything is collected once, so garbage cycles that happened to be
# alive at a freeze are reclaimed; that one pause is timed and exported. In between, the
# collector's own full passes are off (they still took up to 50 ms over what 5 s of live
# traffic leaves behind): the young generations' passes reclaim the short-lived garbage.
GC_FULL_EVERY_S = 3600.0
NO_AUTOMATIC_FULL_PASS = 1_000_000_000  # gen-2 threshold: never reached


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loop_lag = Histogram(
            "unhindered_event_loop_lag_seconds",
            f"How late the collector's event loop woke a task sleeping "
            f"{LOOP_LAG_PERIOD_S * 1000:g} ms: the time it was blocked.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=registry)
        self.gc_pause = Histogram(
            "unhindered_gc_pause_seconds",
            "Pauses of Python's garbage collector, which stop every thread, by generation.",
            ["generation"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=registry)
        self._gc_started = 0.0
        self._thresholds = gc.get_threshold()

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pause.labels(str(info["generation"])).observe(
                time.perf_counter() - self._gc_started)

    def start(self) -> list[asyncio.Task]:
        """Applies the settings and starts the watchers; cancel the tasks to stop them."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], NO_AUTOMATIC_FULL_PASS)
        gc.callbacks.append(self._on_gc)
        return [asyncio.create_task(self._watch_loop()), asyncio.create_task(self._tame_gc())]

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
            gc.set_threshold(*self._thresholds)

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_LAG_PERIOD_S)
            self.loop_lag.observe(max(0.0, loop.time() - before - LOOP_LAG_PERIOD_S))

    async def _tame_gc(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(GC_FREEZE_EVERY_S)
            if time.monotonic() - last_full >= GC_FULL_EVERY_S:
                gc.unfreeze()
                started = time.perf_counter()
                gc.collect()
                log.info("hourly full garbage collection: %.1f ms",
                         (time.perf_counter() - started) * 1000)
                last_full = time.monotonic()
            gc.freeze()
