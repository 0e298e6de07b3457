"""The centre's control measurements, scheduled: each target of the plan (plan.py) every
control.interval_s, spread over the interval so they never all start at once, and at
once when a probe reports a failed round of it (debounced per target). At most
control.max_concurrent run together. Each runs the probes' own check code
(unhindered.probing.KINDS), so the two views differ only by where they were measured.

Its dependencies are passed in (the store, the database thread, the fleet's checks, the
central lists, the metrics registry): it knows nothing of the Collector that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.control import store as control_store
from collector.control.plan import Central, ControlTarget, FleetCheck, Plan, Planner
from collector.control.settings import ControlSettings
from collector.store.database import Store
from unhindered.measurement import FailureReason
from unhindered.probing import KINDS, CheckOutcome

log = logging.getLogger(__name__)

REPLAN_S = 30.0  # the fleet's checks and the central lists are read again this often
REPLAN_SOON_S = 2.0  # ... or this soon after a failure of a check the plan does not know
PRUNE_S = 3_600.0
SPREAD_MAX_S = 30.0  # a new target's first measurement comes within this, not at once
# A failed round older than this (a probe's backlog after an outage) triggers nothing:
# the centre's view now says nothing about then.
RECENT_S = 600.0
_DETAIL = 500

InDb = Callable[..., Awaitable[Any]]


def icmp_allowed() -> bool:
    """Whether this process may open an ICMP socket: raw (privileged) or the datagram one
    (net.ipv4.ping_group_range)."""
    for kind in (socket.SOCK_RAW, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except OSError:
            continue
    return False


class ControlRunner:
    def __init__(self, settings: ControlSettings, store: Store, in_db: InDb,
                 fleet: Callable[[], Iterable[FleetCheck]],
                 central: Central | None,
                 registry: CollectorRegistry, retention_s: float) -> None:
        self.settings = settings
        self.store = store
        self.in_db = in_db
        self.fleet = fleet
        self.central = central
        self.retention_s = retention_s
        self.plan = Plan()
        self.icmp_ok = settings.icmp and icmp_allowed()
        self.planner = Planner(settings, self.icmp_ok)
        self._due: dict[str, float] = {}  # key -> monotonic time of its next measurement
        self._trigger: dict[str, str] = {}  # key -> why its next one runs, when not periodic
        self._failure_at: dict[str, float] = {}  # key -> last failure-triggered start
        self._running: set[str] = set()
        self._pending: set[tuple[str, str]] = set()  # failed checks the plan did not know
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._wake = asyncio.Event()
        self._replan_at = 0.0
        self._loop_task: asyncio.Task | None = None
        self.success = Gauge(
            "unhindered_control_success",
            "1 when the centre's newest control measurement of the target succeeded, else 0.",
            ["kind", "target"], registry=registry)
        self.measured_at = Gauge(
            "unhindered_control_last_measurement_timestamp_seconds",
            "Start time of the centre's newest control measurement of the target (Unix "
            "seconds).", ["kind", "target"], registry=registry)
        self.measurements = Counter(
            "unhindered_control_measurements",
            "Control measurements made by the centre, by what triggered them.",
            ["trigger"], registry=registry)
        for trigger in ("periodic", "failure"):
            self.measurements.labels(trigger=trigger)

    # --- life ---

    async def start(self) -> None:
        if self.settings.icmp and not self.icmp_ok:
            log.warning("control: the collector may not open an ICMP socket (neither raw nor "
                        "datagram): icmp targets are not measured from the centre")
        for row in await self.in_db(control_store.latest, self.store):
            self._show(row.kind, row.label, row.ok, row.measured_at)
        self._loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- what the collector tells it ---

    def note_failure(self, mission: str, check_id: str, started_at: float) -> None:
        """A probe reported a failed round of (mission, check): measure its target now,
        unless it was measured for a failure less than failure_debounce_s ago."""
        if not self.settings.on_failure or time.time() - started_at > RECENT_S:
            return
        key = self.plan.by_check.get((mission, check_id))
        now = time.monotonic()
        if key is None:
            if (mission, check_id) not in self.plan.skipped:  # a check new since the plan
                if len(self._pending) < self.settings.max_targets:
                    self._pending.add((mission, check_id))
                self._replan_at = min(self._replan_at, now + REPLAN_SOON_S)
                self._wake.set()
            return
        self._failed(key, now)

    def _failed(self, key: str, now: float) -> None:
        if key in self._running:  # one is under way: its result is as fresh
            return
        last = self._failure_at.get(key)
        if last is not None and now - last < self.settings.failure_debounce_s:
            return
        self._failure_at[key] = now
        self._due[key] = now
        self._trigger[key] = "failure"
        self._wake.set()

    def key_for(self, mission: str, check_id: str) -> str | None:
        return self.plan.by_check.get((mission, check_id))

    # --- scheduling ---

    async def _loop(self) -> None:
        pruned_at = float("-inf")  # at start, then hourly
        while True:
            now = time.monotonic()
            if now >= self._replan_at:
                try:
                    self.replan()
                except Exception:
                    log.exception("control: reading the fleet's checks failed")
                self._replan_at = now + REPLAN_S
            if now - pruned_at >= PRUNE_S:
                pruned_at = now
                await self._prune()
            for key, due in list(self._due.items()):
                if due <= now and key not in self._running:
                    self._launch(key)
            wait = min([d - now for d in self._due.values() if d > now] + [1.0])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))
            self._wake.clear()

    def replan(self) -> None:
        """Reads the fleet's checks and the central lists again; new targets are spread
        over the first SPREAD_MAX_S (or the interval, when shorter), gone ones dropped."""
        plan = self.planner.build(self.fleet(), self.central)
        now = time.monotonic()
        spread = min(self.settings.interval_s, SPREAD_MAX_S)
        for key in plan.targets:
            if key not in self._due:
                self._due[key] = now + (int(key, 16) % 1000) / 1000 * spread
        for key in set(self._due) - set(plan.targets):
            del self._due[key]
            self._trigger.pop(key, None)
            self._failure_at.pop(key, None)
            gone = self.plan.targets.get(key)
            if gone is not None:
                with contextlib.suppress(KeyError):
                    self.success.remove(gone.kind, gone.label)
                    self.measured_at.remove(gone.kind, gone.label)
        new_skips = set(plan.skipped.items()) - set(self.plan.skipped.items())
        for (mission, check_id), why in sorted(new_skips):
            log.info("control: %s/%s is not measured from the centre: %s", mission, check_id,
                     why)
        if set(plan.targets) != set(self.plan.targets):
            log.info("control: %d targets to measure from the centre (%d checks)",
                     len(plan.targets), len(plan.by_check))
        self.plan = plan
        pending, self._pending = self._pending, set()
        for check in pending:
            key = plan.by_check.get(check)
            if key is not None:
                self._failed(key, now)

    def _launch(self, key: str) -> None:
        target = self.plan.targets[key]
        trigger = self._trigger.pop(key, "periodic")
        self._running.add(key)
        # Until it ends, it is not due: the next one is set from its end.
        self._due[key] = float("inf")
        task = asyncio.create_task(self._measure(target, trigger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _measure(self, target: ControlTarget, trigger: str) -> None:
        try:
            async with self._slots:
                row = await measure(target, trigger, self.settings.timeout_s)
            self._show(row.kind, row.label, row.ok, row.measured_at)
            self.measurements.labels(trigger=trigger).inc()
            await self.in_db(control_store.insert_result, self.store, row)
            log.debug("control: %s %s: %s", target.kind, target.label,
                      "ok" if row.ok else f"{row.reason}: {row.detail}")
        except Exception:
            log.exception("control: measuring %s failed", target.label)
        finally:
            self._running.discard(target.key)
            if target.key in self._due:  # still planned
                self._due[target.key] = time.monotonic() + self.settings.interval_s
            self._wake.set()

    def _show(self, kind: str, label: str, ok: bool, measured_at: float) -> None:
        self.success.labels(kind, label).set(1 if ok else 0)
        self.measured_at.labels(kind, label).set(measured_at)

    async def _prune(self) -> None:
        try:
            deleted = await self.in_db(control_store.prune, self.store,
                                       time.time() - self.retention_s)
        except Exception:
            log.exception("control: pruning old results failed")
            return
        if deleted:
            log.info("control: deleted %d results older than %.0f days", deleted,
                     self.retention_s / 86_400)


async def measure(target: ControlTarget, trigger: str, timeout_s: float
                  ) -> control_store.ControlRow:
    """One control measurement with the probes' own check code."""
    kind = KINDS[target.kind]
    started_at = time.time()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            outcome = await kind.run(target.check)
    except TimeoutError:
        outcome = CheckOutcome(ok=False, reason=FailureReason.TIMEOUT,
                               detail=f"the control took over {timeout_s} s (control.timeout_s)",
                               figures=kind.no_figures())
    except OSError as exc:  # e.g. an ICMP socket refused after all
        outcome = CheckOutcome(ok=False, reason=FailureReason.ERROR,
                               detail=str(exc)[:_DETAIL], figures=kind.no_figures())
    return control_store.ControlRow(
        key=target.key, kind=target.kind, target=target.target, label=target.label,
        settings=json.dumps(target.check.model_dump(mode="json", exclude={"id", "group"}),
                            sort_keys=True),
        trigger=trigger, measured_at=started_at, duration_s=time.perf_counter() - started,
        ok=outcome.ok, reason=None if outcome.reason is None else str(outcome.reason),
        detail=None if outcome.detail is None else outcome.detail[:_DETAIL],
        ip_version=outcome.ip_version, figures=outcome.figures.model_dump_json())
