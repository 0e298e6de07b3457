"""The collector's runtime settings: applied at start, undone at stop, and measured."""

import asyncio
import gc
import sys

from prometheus_client import CollectorRegistry

from collector.metrics.runtime import GIL_SWITCH_INTERVAL_S, NO_AUTOMATIC_FULL_PASS, RuntimeMetrics


async def test_settings_apply_and_are_undone_and_pauses_are_measured():
    registry = CollectorRegistry()
    runtime = RuntimeMetrics(registry)
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    tasks = runtime.start()
    try:
        assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL_PASS
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL_S
        gc.collect()
        await asyncio.sleep(0.2)  # a few wake-ups of the loop-lag probe
    finally:
        for task in tasks:
            task.cancel()
        runtime.stop()
        sys.setswitchinterval(interval)
    assert gc.get_threshold() == thresholds
    assert registry.get_sample_value("unhindered_gc_pause_seconds_count",
                                     {"generation": "2"}) >= 1
    assert registry.get_sample_value("unhindered_event_loop_lag_seconds_count") >= 2
