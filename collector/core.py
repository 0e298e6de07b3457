"""The collector itself, apart from any way in: one `Collector` owns the store, the fleet's
state, the timelines, the metrics, the alert pusher, the SNMP side and the background
jobs, starts and stops them, and has the one `store_results` that every way a result
comes in calls (an HTTP push, an SNMP poll). The web app holds a Collector under one key
(collector/web/context.py) and is only one of its consumers, like the SNMP receiver.

One thread owns the database: SQLite wants a single writer, and the event loop must never
wait on a disk flush. `in_db` runs a function there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from collector.alerting.push import AlertPusher
from collector.config import CollectorConfig
from collector.inventory.central import CentralChecks
from collector.metrics.exposition import Metrics, RenderedMetrics
from collector.state.fleet import FleetState
from collector.state.timeline import Timelines
from collector.store import paths as stored_paths
from collector.store.database import Store, Stored
from collector.store.rollups import Rollups
from collector.store.writer import WriterLock
from unhindered.measurement import Batch, RejectReason

log = logging.getLogger(__name__)

# How often silence is looked for: part of the time from a cut to its alert
# (docs/benchmarks.md, "Alerts: cut to e-mail").
SILENCE_CHECK_S = 1.0
ROLLUP_PERIOD_S = 30.0
PRUNE_PERIOD_S = 3_600.0


class Collector:
    def __init__(self, config: CollectorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.state = FleetState()
        policy = config.states.policy()
        self.inventory = config.load_inventory()
        self.timelines = Timelines(
            store, lambda mission: self.inventory.policy_for(mission, policy))
        self.rollups = Rollups(store)
        alerting = config.alerting
        self.pusher = (AlertPusher(alerting.alertmanager_url, alerting.resend_s,
                                   check_states=self.timelines.check_states)
                       if alerting.alertmanager_url else None)
        if self.pusher is not None:
            self.timelines.observers.append(self.pusher.observe)
        self.central = CentralChecks(config.checks_file) if config.checks_file else None
        self.metrics = Metrics(self.state, self.timelines, self.inventory)
        self.exposition = RenderedMetrics(self.metrics)
        self.db_thread = ThreadPoolExecutor(1, thread_name_prefix="db")
        self.writer = WriterLock(store)
        self.background: list[asyncio.Task] = []
        self._replays_wanted = asyncio.Event()  # set when late rounds left a replay pending
        self.snmp = None  # collector.snmp.service.SnmpService, when configured
        self.control = None  # collector.control.runner.ControlRunner, when enabled

    async def in_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, fn, *args)

    async def store_results(self, batch: Batch, version: str | None = None) -> Stored:
        """Stores a batch's new results (those whose (probe, outbox, seq) is not stored
        yet) and folds them into the states: HTTP pushes and SNMP polls both come here.
        `version`: the probe's, when the way in tells it."""
        received = time.time()
        stored = await self.in_db(self.store.store_batch, batch, received, version)
        await self.in_db(self.timelines.hear, batch.probe_id, received)
        new, duplicates = stored.new, stored.duplicates
        if any(m.path is not None for m in new):  # the paths the probes recorded (docs/path.md)
            await self.in_db(stored_paths.store_paths, self.store, new, received)
        # Acknowledged from here on: the results are committed. States follow from them.
        for m in new:
            self.state.apply(m)
            if not m.ok and self.control is not None:  # the centre looks at once
                self.control.note_failure(m.mission, m.check_id, m.started_at.timestamp())
        if self.pusher is not None:  # a backlog's alerts wait for its end (alerting/push.py)
            self.pusher.note_backlog(batch.mission, batch.probe_id, batch.backlog)
        if new:
            await self.in_db(self.timelines.apply, new)
            if self.timelines.replays:  # the rest of a late round's replay: off ingest
                self._replays_wanted.set()
        if batch.checks is not None:  # checks the probe no longer runs are retired
            since = min(batch.checks.since.timestamp(), time.time())  # a clock ahead
            await self.in_db(self.timelines.note_check_list, batch.probe_id, batch.mission,
                             batch.checks.ids, since)
        if self.pusher is not None:
            self.pusher.note_applied(batch.mission, batch.probe_id)
        self.state.note_report(batch.probe_id, batch.mission, len(new), batch.backlog,
                               dropped=batch.dropped)
        self.metrics.ingest_results.labels(outcome="stored").inc(len(new))
        self.metrics.ingest_results.labels(outcome="duplicate").inc(duplicates)
        if stored.refused:
            self.metrics.ingest_rejected.labels(reason=RejectReason.STORE_REFUSED).inc(
                len(stored.refused))
        return stored

    async def heartbeat(self, probe_id: str, mission: str, backlog: int) -> None:
        """A probe's heartbeat (POST /api/v1/heartbeat): it is alive and reaches us, so
        its checks are not silent yet; from now on, its silence is (docs/states.md)."""
        await self.in_db(self.timelines.hear, probe_id, time.time(), True)
        log.debug("heartbeat from probe %s (%s), %d results queued", probe_id, mission,
                  backlog)

    async def _every(self, period: float, what: str, job) -> None:
        """Runs job() on the database thread every `period` seconds, for ever."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.in_db(job)
            except Exception:
                log.exception("%s failed", what)

    async def _replays(self) -> None:
        """Runs the pending replays of late rounds (Timelines.replay_step), one bounded
        step a database-thread job: ingest's jobs, queued meanwhile, run between them."""
        while True:
            with contextlib.suppress(TimeoutError):  # and looks now and then anyway
                await asyncio.wait_for(self._replays_wanted.wait(), SILENCE_CHECK_S)
            self._replays_wanted.clear()
            try:
                while await self.in_db(self.timelines.replay_step):
                    pass
            except Exception:
                log.exception("replaying late rounds failed")

    async def start(self) -> None:
        store, timelines, config = self.store, self.timelines, self.config
        await self.in_db(self.writer.acquire)  # AnotherWriter: a second collector stops here
        await self.in_db(store.migrate)
        latest = await self.in_db(store.latest_per_check)
        counts = await self.in_db(store.round_counts)
        self.state.load(latest, counts)
        await self.in_db(timelines.load, latest)
        log.info("state rebuilt from the store: %d checks", len(self.state.checks))
        # What start-up loaded lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise stall every thread for tens of ms.
        gc.collect()
        gc.freeze()
        self.exposition.warm()
        # Silence is counted from now at the earliest: the collector's own downtime is
        # not the missions' silence (docs/states.md).
        timelines.listening_since = time.time()
        retention_s = config.retention.raw_days * 86_400
        minute_retention_s = config.retention.rollup_1m_days * 86_400
        self.background = [
            *self.metrics.runtime.start(),
            asyncio.create_task(self._every(SILENCE_CHECK_S, "checking for silent checks",
                                            lambda: timelines.tick(time.time()))),
            asyncio.create_task(self._every(ROLLUP_PERIOD_S, "computing rollups",
                                            lambda: self.rollups.run(time.time()))),
            asyncio.create_task(self._every(
                PRUNE_PERIOD_S, "pruning raw results",
                lambda: (self.rollups.prune(time.time(), retention_s, minute_retention_s),
                         stored_paths.prune(self.store, time.time() - retention_s)))),
            asyncio.create_task(self._replays()),
        ]
        if self.pusher is not None:  # a fleet-wide outage's hold ends with time, not a change
            self.background.append(asyncio.create_task(
                self._every(SILENCE_CHECK_S, "re-checking held alerts", self.pusher.reconcile)))
        if config.snmp.enabled:
            from collector.snmp.service import SnmpService  # pysnmp loads only when used
            self.snmp = SnmpService(config.snmp, self)
            await self.snmp.start()
        if config.control.enabled:
            await self._start_control(retention_s)

    async def _start_control(self, retention_s: float) -> None:
        from collector.control.plan import FleetCheck  # the check code loads only when used
        from collector.control.runner import ControlRunner

        def fleet() -> list[FleetCheck]:
            return [FleetCheck(c.mission, c.check_id, c.probe_id, c.kind, c.target)
                    for c in self.state.checks.values()]

        self.control = ControlRunner(
            self.config.control, self.store, self.in_db, fleet,
            self.central.for_probe if self.central is not None else None,
            self.metrics.registry, retention_s)
        await self.control.start()

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        if self.control is not None:
            await self.control.stop()
        self.metrics.runtime.stop()
        if self.snmp is not None:
            await self.snmp.stop()
        self.exposition.close()
        if self.pusher is not None:
            self.pusher.close()
        self.db_thread.shutdown(wait=True)
        self.writer.release()
        self.store.close()
