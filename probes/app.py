"""The probe service: schedules every check, queues results in the outbox, pushes them."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from probes.checks import CheckBase, icmp
from probes.config import ProbeConfig
from probes.outbox import Outbox
from probes.reporters.http_push import HttpPusher
from probes.rounds import measure

log = logging.getLogger(__name__)


class Probe:
    def __init__(self, config: ProbeConfig) -> None:
        self.config = config
        token = config.collector.read_token()  # fail at start, not at the first push
        self.outbox = Outbox(config.outbox)
        self.pusher = HttpPusher(config.collector, self.outbox, config.probe_id,
                                 config.mission, token)
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    async def run_round(self, check: CheckBase) -> None:
        measurement = await measure(check, self.config.probe_id, self.config.mission)
        seq = await self.outbox.append(measurement)
        log.debug("check %s: ok=%s reason=%s seq=%d", check.id, measurement.ok,
                  measurement.reason, seq)
        self.pusher.wake()

    def schedule(self) -> None:
        now = datetime.now(UTC)
        for check in self.config.checks:
            # A random start spreads the rounds so checks and probes do not fire together.
            offset = timedelta(seconds=random.uniform(0, min(check.interval_s, 10)))
            self.scheduler.add_job(
                self.run_round, IntervalTrigger(seconds=check.interval_s, start_date=now + offset),
                args=[check], id=check.id, max_instances=1, coalesce=True,
                misfire_grace_time=max(1, int(check.interval_s)),
            )

    async def run(self) -> None:
        icmp.engine(self.config.icmp)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.schedule()
        self.scheduler.start()
        pusher = asyncio.create_task(self.pusher.run(), name="http-push")
        stats = await self.outbox.stats()
        log.info("probe %s (%s) started: %d checks, outbox %s holds %d results (seq %d)",
                 self.config.probe_id, self.config.mission, len(self.config.checks),
                 self.config.outbox, stats.depth, stats.last_seq)
        done = asyncio.create_task(stop.wait())
        await asyncio.wait([pusher, done], return_when=asyncio.FIRST_COMPLETED)
        self.scheduler.shutdown(wait=False)
        pusher.cancel()
        if pusher.done() and not pusher.cancelled() and pusher.exception():
            raise pusher.exception()  # type: ignore[misc]
        self.outbox.close()
        log.info("probe stopped; unacknowledged results stay in the outbox")
