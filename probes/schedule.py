"""Runs each check every `interval_s` on the event loop's monotonic clock.

Why not APScheduler: in the footprint benchmark (docs/benchmarks.md) its wake-up and job
dispatch (timezone-aware datetimes, trigger arithmetic and bookkeeping on every run) took
about a fifth of the probe's CPU for single-echo ICMP rounds, and importing it about
3.6 MiB of the probe's 48 MiB. What the probe needs is one timer per check: a
`loop.call_at` handle that starts the round as a task and sets the next timer.

- Drift-free: the next run is due one interval after the previous due time, not after the
  round ended; due times already past are skipped (a missed run is coalesced, not queued).
- Never two rounds of one check at once: a run that comes due while the check's round is
  still under way is skipped, also across a reschedule (the key is the check's id).
- `clear()` (a reload, a new central list) cancels the timers and lets rounds under way
  finish; `stop()` cancels the timers and the rounds, and waits for them to end.
- One grid for the probe (`on_grid`): a check's rounds fall on the points
  `phase_s + k * interval_s` of the scheduler's own clock, so checks of one interval start
  together (and those of a multiple interval with them, every few rounds). Rounds that
  start together end together, and share one outbox commit and one push instead of one
  each: for ten single-echo ICMP checks, about a quarter of the probe's CPU
  (docs/benchmarks.md, footprint). The phase, drawn once at random, keeps probes apart;
  a reload keeps it, so rescheduling neither bunches nor skips rounds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)
Round = Callable[[], Coroutine[Any, Any, None]]


MAX_PHASE_S = 10.0  # the probe's phase: at most this, or one interval when shorter


class Scheduler:
    def __init__(self, phase_s: float | None = None) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._rounds: dict[str, asyncio.Task] = {}  # the round under way of each key
        self._phase_s = random.uniform(0, MAX_PHASE_S) if phase_s is None else phase_s
        self._epoch: float | None = None  # the loop's time of the grid's origin

    def every(self, key: str, interval_s: float, offset_s: float,
              run: Round) -> None:
        """Calls `run()` every `interval_s` from `offset_s` from now, replacing the timer
        that `key` had. Call it from the running event loop."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        loop = asyncio.get_running_loop()
        self.cancel(key)
        self._arm(loop, key, loop.time() + max(0.0, offset_s), interval_s, run)

    def on_grid(self, key: str, interval_s: float, run: Round) -> None:
        """Like `every`, from the next point of the probe's grid for `interval_s`, so that
        this check's rounds start with those of the other checks of its interval."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._epoch is None:
            self._epoch = now + self._phase_s
        due = self._epoch + math.ceil((now - self._epoch) / interval_s) * interval_s
        self.cancel(key)
        self._arm(loop, key, due, interval_s, run)

    def due(self, key: str) -> float | None:
        """When the next run of `key` is due (the loop's clock), or None if none is."""
        timer = self._timers.get(key)
        return None if timer is None else timer.when()

    def cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def clear(self) -> None:
        """Cancels every timer; rounds under way finish."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def stop(self) -> None:
        """Cancels every timer and every round under way, and waits for the rounds."""
        self.clear()
        rounds = list(self._rounds.values())
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, return_exceptions=True)

    def _arm(self, loop: asyncio.AbstractEventLoop, key: str, due: float, interval_s: float,
             run: Round) -> None:
        self._timers[key] = loop.call_at(due, self._fire, loop, key, due, interval_s, run)

    def _fire(self, loop: asyncio.AbstractEventLoop, key: str, due: float, interval_s: float,
              run: Round) -> None:
        if key not in self._rounds:
            task = loop.create_task(run(), name=f"round {key}")
            self._rounds[key] = task
            task.add_done_callback(lambda t: self._ended(key, t))
        # else: the previous round still runs, and this run is skipped.
        following = due + interval_s
        late = loop.time() - following
        if late >= 0:  # the loop was held up past whole intervals: skip them
            following += (math.floor(late / interval_s) + 1) * interval_s
        self._arm(loop, key, following, interval_s, run)

    def _ended(self, key: str, task: asyncio.Task) -> None:
        if self._rounds.get(key) is task:
            del self._rounds[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("round of %s failed", key, exc_info=exc)
