"""The probe's scheduler (probes/schedule.py): start offsets, a period without drift, no
overlapping rounds of one check, cancelling on a reschedule, and a clean stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from probes import config as probe_config
from probes.app import Probe
from probes.schedule import Scheduler

EARLY = 1e-3  # a timer may fire this much before its time (the loop's clock resolution)


async def test_the_probe_starts_its_checks_on_one_grid(tmp_path):
    """Checks of one interval start together, those of a multiple interval with them, at
    the probe's phase: within the first interval (at most 10 s) from now."""
    path = tmp_path / "probe.yaml"
    path.write_text(
        "probe_id: fra-1\nmission: FRA\noutbox: outbox.sqlite\n"
        "collector: {urls: ['http://127.0.0.1:9640/'], token: not-used}\n"
        "central: {enabled: false}\nlocal: {gateway: none, resolver: none}\n"
        "checks:\n"
        + "".join(f"  - {{id: slow-{i}, kind: icmp, target: 127.0.0.1, interval_s: 60}}\n"
                  f"  - {{id: fast-{i}, kind: icmp, target: 127.0.0.1, interval_s: 2}}\n"
                  for i in range(20)))
    probe = Probe(probe_config.load(path), path)
    try:
        loop = asyncio.get_running_loop()
        before = loop.time()
        probe.schedule()
        after = loop.time()
        dues = {c.id: probe.scheduler.due(c.id) for c in probe.config.checks}
        fast = {d for i, d in dues.items() if i.startswith("fast")}
        slow = {d for i, d in dues.items() if i.startswith("slow")}
        assert len(fast) == 1 and len(slow) == 1, (fast, slow)
        (fast_due,), (slow_due,) = fast, slow
        assert before <= fast_due <= after + 2
        assert before <= slow_due <= after + 10
        # The slow checks' first round is one of the fast checks' rounds.
        steps = (slow_due - fast_due) / 2
        assert abs(steps - round(steps)) < 1e-9, steps
    finally:
        await probe.scheduler.stop()
        probe.outbox.close()


async def test_the_grid_keeps_its_phase_across_a_reschedule():
    """A reload schedules again from the same grid: a check's next round stays where it
    was, neither sooner (bunching) nor an interval later (a skipped round)."""
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(phase_s=0.37)

    async def nothing() -> None:
        pass

    scheduler.on_grid("c", 0.1, nothing)
    first = scheduler.due("c")
    await asyncio.sleep(0.234)
    scheduler.on_grid("c", 0.1, nothing)  # a reload
    again = scheduler.due("c")
    assert again > loop.time()
    steps = (again - first) / 0.1
    assert abs(steps - round(steps)) < 1e-9 and round(steps) >= 2, steps
    other = Scheduler(phase_s=0.42)
    other.on_grid("c", 0.1, nothing)
    offset = ((other.due("c") - again) / 0.1) % 1  # probes with other phases stay apart
    assert 0.01 < offset < 0.99, offset
    await scheduler.stop()
    await other.stop()


async def test_runs_keep_their_period_without_drift():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler()
    interval, runs = 0.02, 25
    started: list[float] = []
    dues: list[float] = []  # each run's own due time: the timer set by the run before
    done = asyncio.Event()

    async def round_() -> None:
        started.append(loop.time())
        dues.append(scheduler.due("c"))  # the next run's timer is set before this round
        if len(started) == runs:
            done.set()

    scheduler.every("c", interval, 0.01, round_)
    first_due = scheduler.due("c")
    await asyncio.wait_for(done.wait(), 5)
    await scheduler.stop()

    dues = [first_due, *dues[:-1]]
    # Every due time is the first one plus a whole number of intervals, however late
    # the runs before it started: the period does not drift.
    steps = [(due - first_due) / interval for due in dues]
    for step in steps:
        assert step == pytest.approx(round(step), abs=1e-6), steps
    assert steps == sorted(set(steps)), steps
    for ran, due in zip(started, dues, strict=True):
        assert ran >= due - EARLY
    # On a busy machine a run may be skipped, never several intervals' worth each time.
    assert round(steps[-1]) < 2 * runs, steps
    assert scheduler.due("c") is None


async def test_a_round_that_outlasts_its_interval_is_not_overlapped_and_runs_coalesce():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler()
    interval, duration = 0.05, 0.12
    starts: list[float] = []
    pending: list[float] = []  # the next due time when each round ended
    running = 0
    most = 0
    done = asyncio.Event()

    async def slow_round() -> None:
        nonlocal running, most
        starts.append(loop.time())
        running += 1
        most = max(most, running)
        await asyncio.sleep(duration)
        running -= 1
        pending.append(scheduler.due("c"))
        if len(starts) == 3:
            done.set()

    scheduler.every("c", interval, 0, slow_round)
    first_due = scheduler.due("c")
    await asyncio.wait_for(done.wait(), 5)
    await scheduler.stop()

    assert most == 1
    # The runs due while a round ran were skipped, not queued: the next round waits for
    # the next due time on the same grid, rather than starting when the previous ended.
    assert starts[1] - first_due >= 3 * interval - EARLY, starts
    for ended_due, start in zip(pending, starts[1:], strict=False):
        steps = (ended_due - first_due) / interval
        assert steps == pytest.approx(round(steps), abs=1e-6)
        assert start >= ended_due - EARLY


async def test_a_reschedule_cancels_the_old_timer_and_does_not_overlap_a_round_under_way():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler()
    calls: list[str] = []
    release = asyncio.Event()
    old_running = asyncio.Event()

    async def old() -> None:
        calls.append("old")
        old_running.set()
        await release.wait()
        calls.append("old ended")

    new_ran = asyncio.Event()

    async def new() -> None:
        calls.append("new")
        new_ran.set()

    scheduler.every("c", 0.05, 0, old)
    await asyncio.wait_for(old_running.wait(), 5)
    # A reload while the old round waits: its timer goes, the round goes on.
    scheduler.clear()
    assert scheduler.due("c") is None
    scheduler.every("c", 0.03, 0, new)
    # Its first runs come due while the old round of the same check still runs: skipped.
    skipped_until = scheduler.due("c") + 0.07
    await asyncio.sleep(skipped_until - loop.time())
    assert calls == ["old"]
    release.set()
    await asyncio.wait_for(new_ran.wait(), 5)
    assert calls[:3] == ["old", "old ended", "new"]

    # Replacing a key's timer, and cancelling it: neither the old nor the new one runs.
    scheduler.every("d", 0.05, 0.02, old)
    scheduler.every("d", 0.05, 0.02, new)
    assert scheduler.due("c") is not None
    scheduler.cancel("c")
    scheduler.cancel("d")
    count = len(calls)
    await asyncio.sleep(0.1)  # past when both were due
    assert len(calls) == count
    await scheduler.stop()


async def test_stop_cancels_rounds_under_way_quietly_and_a_failed_round_is_logged(caplog):
    caplog.set_level(logging.DEBUG)
    scheduler = Scheduler()
    started = asyncio.Event()
    failed = asyncio.Event()
    ended_by: list[str] = []

    async def long_round() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended_by.append("cancel")
            raise

    async def broken_round() -> None:
        failed.set()
        raise RuntimeError("the check broke")

    scheduler.every("long", 60, 0, long_round)
    scheduler.every("broken", 60, 0, broken_round)
    await asyncio.wait_for(asyncio.gather(started.wait(), failed.wait()), 5)
    await asyncio.sleep(0)  # the failed round's task ends
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.getMessage(), str(r.exc_info[1])) for r in failures] == [
        ("round of broken failed", "the check broke")]
    # A failed round keeps its check scheduled.
    assert scheduler.due("broken") is not None

    caplog.clear()
    await asyncio.wait_for(scheduler.stop(), 5)
    assert ended_by == ["cancel"]
    assert scheduler.due("long") is None and scheduler.due("broken") is None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_an_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        Scheduler().every("c", 0, 0, _nothing)


async def _nothing() -> None:
    return None
