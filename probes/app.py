"""The probe service: schedules every check, confirms changes quickly, stamps results with
the health of the local side, queues them in the outbox and pushes them."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from probes import config as probe_config
from probes.central import CentralChecks, merge
from probes.checkstate import Change, CheckStates, State
from probes.config import ProbeConfig
from probes.enroll import credential
from probes.local import LocalContext
from probes.outbox import MIB, Outbox
from probes.path.runner import PathRecorder
from probes.reporters.http_push import HttpPusher
from probes.rounds import measure
from probes.schedule import Scheduler
from probes.selfmetrics import ProbeMetrics
from unhindered.configfile import ConfigError
from unhindered.measurement import AnyMeasurement, CheckList
from unhindered.probing import CheckBase, icmp

log = logging.getLogger(__name__)
METRICS_REFRESH_S = 2.0  # how fresh the outbox figures in the probe's /metrics are
# Rounds spread over the interval seldom end in one pass of the loop: waiting this long for
# others before a commit shares one fsync between more results (each costs about as much
# CPU as the rest of a single-echo round) and still stores each within a blink.
COMMIT_GATHER_S = 0.1


class Probe:
    def __init__(self, config: ProbeConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.outbox = Outbox(config.outbox, config.outbox_max_mib * MIB,
                             gather_s=COMMIT_GATHER_S)
        self.pusher = HttpPusher(config.collector, self.outbox, config.probe_id,
                                 config.mission, token="")  # set by run(), after enrollment
        self.local = LocalContext(config.local)
        self.central = CentralChecks(config.outbox.with_suffix(".central-checks.json"))
        self.metrics = ProbeMetrics(self.pusher)
        self.scheduler = Scheduler()
        self._last_ok: dict[str, bool] = {}
        self._local_run: asyncio.Future | None = None
        self._local_run_started = 0.0
        self._confirming: set[asyncio.Future] = set()  # local checks' confirmations
        self.states = CheckStates()  # newest rounds and confirmed states (SNMP reads them)
        self.paths = PathRecorder(config.path)
        self.states.listeners.append(self._on_change)
        self.started = time.monotonic()
        self.snmp = None  # probes.snmp.service.SnmpService when configured

    # --- rounds ---

    async def _measure(self, check: CheckBase, confirmation: float | None = None
                       ) -> AnyMeasurement:
        """One round. For a confirmation round, `confirmation` is when the round it
        confirms began: a local check run since then still tells about the local side."""
        started = time.monotonic() if confirmation is None else confirmation
        m = await measure(check, self.config.probe_id, self.config.mission,
                          confirmation=confirmation is not None)
        self.metrics.rounds.labels(check.id, "ok" if m.ok else "failed").inc()
        self.metrics.round_seconds.labels(check.id).set(m.duration_s)
        if check.group == "local":
            self.local.note(m)
        elif not m.ok or self.local.recheck_on_success(
                recovered=self._last_ok.get(check.id) is False):
            await self._check_local_side(started)
        if check.group != "local":
            m = m.model_copy(update={"local_ok": self.local.healthy()})
        return m

    async def _check_local_side(self, since: float) -> None:
        """A round failed (or succeeded while the local side was last seen failing): is it
        the target, or our own side? Unless the local checks ran since that round began,
        run them now; rounds at the same moment share one run. Only their first round is
        waited for; their confirmation rounds go on in the background."""
        if not self.local.stale(since):
            return
        if self._local_run is None or self._local_run_started < since:
            self._local_run_started = time.monotonic()
            self._local_run = asyncio.ensure_future(asyncio.gather(
                *(self._local_round(c) for c in self.local.checks)))
        await asyncio.shield(self._local_run)

    async def _local_round(self, check: CheckBase) -> None:
        started = time.monotonic()
        m = await self._measure(check)
        await self._record(m)
        task = asyncio.ensure_future(self._confirm(check, m, started))
        self._confirming.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._confirming.discard)

    async def _record(self, m: AnyMeasurement) -> None:
        m = self.paths.attach(m)  # a path recorded since the check's previous result
        seq = await self.outbox.append(m)  # None: not stored (full disk), and counted
        # Seq 0 for a result that has none: the SNMP poller then leaves it out, rather
        # than storing it under another result's seq.
        self.states.measured(m, seq or 0)
        log.debug("check %s: ok=%s reason=%s confirmation=%s seq=%s", m.check_id, m.ok,
                  m.reason, m.confirmation, seq)
        # A round beyond the mission's own network that succeeded: the way to the centre
        # may work again, which cuts a push back-off short (docs/protocol.md).
        self.pusher.wake(success=m.ok and m.group != "local")
        self.paths.after_round(m)

    def _on_change(self, change: Change) -> None:
        # A confirmed failure: where does the way to the target stop? (docs/path.md)
        if change.check is not None and change.new == State.DOWN:
            self.paths.failed(change.check.check_id)

    async def run_round(self, check: CheckBase) -> None:
        started = time.monotonic()
        m = await self._measure(check)
        await self._record(m)
        await self._confirm(check, m, started)
        # While the check fails, its rounds come every retry_interval_s: the collector
        # places the outage's end from them (docs/states.md). The schedule's runs are
        # skipped meanwhile (this round is under way). Not the local checks: a failing
        # round waits for them (_check_local_side).
        retry = check.retry_interval_s
        while (0 < retry < check.interval_s and check.group != "local"
               and self._last_ok.get(check.id) is False):
            await asyncio.sleep(max(0.0, started + retry - time.monotonic()))
            if not self._runs(check) or check not in self._all_checks():
                return  # removed or changed meanwhile (a reload): its schedule goes on
            started = time.monotonic()
            m = await self._measure(check)
            await self._record(m)
            await self._confirm(check, m, started)

    async def _confirm(self, check: CheckBase, m: AnyMeasurement, started: float) -> None:
        """After round `m` (begun at monotonic `started`): confirmation rounds when its
        outcome changed, else the state it confirms."""
        previous = self._last_ok.get(check.id)
        self._last_ok[check.id] = m.ok
        changed = (not m.ok) if previous is None else (m.ok != previous)
        if not changed:
            self.states.confirmed(m, m.started_at)
            return
        # The outcome changed: confirm it within seconds instead of waiting a whole
        # interval, so the collector can change state quickly and only when it is real.
        # Each starts confirm_interval_s after the round before it started, or as soon as
        # that one ended if later: a failing round mostly waits out its timeout, and
        # waiting the interval again after it only delays the news (cut to e-mail).
        newest, previous_start = m, started
        for _ in range(check.confirm_count):
            await asyncio.sleep(max(0.0, previous_start + check.confirm_interval_s
                                    - time.monotonic()))
            if not self._runs(check):
                break  # removed meanwhile (a reload): no round after it was retired
            self.metrics.confirmations.labels(check.id).inc()
            previous_start = time.monotonic()
            again = await self._measure(check, confirmation=started)
            await self._record(again)
            self._last_ok[check.id] = again.ok
            if again.ok != m.ok:
                break
            newest = again
        else:  # every confirmation round agreed: the change is confirmed
            self.states.confirmed(newest, m.started_at)
            # The rounds that make the collector change state are queued: send them now,
            # not up to batch_max_age_s later (cut to e-mail, docs/benchmarks.md).
            self.pusher.wake(urgent=True)

    async def _refresh_metrics(self) -> None:
        while self.config.metrics is not None:
            await self.metrics.refresh(self)
            await asyncio.sleep(METRICS_REFRESH_S)

    def _all_checks(self) -> list[CheckBase]:
        checks = merge(self.central.checks, self.config.checks) if self.config.central.enabled \
            else list(self.config.checks)
        return [*self.local.checks, *checks]

    async def _follow_central_checks(self) -> None:
        while True:
            if self.config.central.enabled:
                urls = [str(u) for u in self.config.collector.urls]
                if await self.central.poll(self.pusher.transport, urls, self.pusher.token):
                    self.schedule()
            await asyncio.sleep(self.config.central.poll_s)

    def _runs(self, check: CheckBase) -> bool:
        listed = self.pusher.check_list
        return listed is None or check.id in listed.ids

    def schedule(self) -> None:
        """(Re)schedules every check: the timers of the previous schedule are cancelled,
        rounds under way finish. Call it from the running event loop."""
        now = datetime.now(UTC)
        self.scheduler.clear()
        self.states.configure(self._all_checks())
        self.paths.configure(self._all_checks())
        ids = list(dict.fromkeys(c.id for c in self._all_checks()))
        if self.pusher.check_list is None or set(self.pusher.check_list.ids) != set(ids):
            # Sent with every batch: the collector retires the checks left out from now
            # on, and counts their rounds from before (docs/states.md).
            self.pusher.check_list = CheckList(since=now, ids=ids)
        for check in self._all_checks():
            # On the probe's grid: rounds of one interval start together and share a
            # commit and a push; the probe's random phase keeps probes apart.
            self.scheduler.on_grid(check.id, check.interval_s,
                                   partial(self.run_round, check))

    # --- configuration reload (SIGHUP) ---

    def reload(self) -> bool:
        """Applies the config file again; a bad file is refused and the running one kept."""
        if self.config_path is None:
            return False
        try:
            new = probe_config.load(self.config_path)
            fixed = ("probe_id", "mission", "outbox")
            changed = [f for f in fixed if getattr(new, f) != getattr(self.config, f)]
            if changed:
                raise ConfigError(self.config_path, [
                    f"{', '.join(changed)} cannot change while the probe runs: restart it"])
            token = new.collector.read_token()
        except (ConfigError, OSError) as exc:
            self.metrics.reloads.labels("refused").inc()
            log.error("config reload refused, the running configuration stays: %s", exc)
            return False
        if (new.icmp, new.metrics, new.snmp, new.outbox_max_mib) != (
                self.config.icmp, self.config.metrics, self.config.snmp,
                self.config.outbox_max_mib):
            log.warning("the icmp, metrics and snmp sections and outbox_max_mib take effect "
                        "at the next restart")
        self.config = new
        self.pusher.reconfigure(new.collector, token)
        self.paths.reconfigure(new.path)
        self.local = LocalContext(new.local)
        self.schedule()
        self.metrics.reloads.labels("applied").inc()
        log.info("config reloaded: %d local checks", len(new.checks))
        return True

    # --- the service ---

    async def _start_snmp(self) -> None:
        # Imported here: pysnmp stays out of probes that do not use SNMP. And the probe
        # never compiles MIBs (setup.py does): pysnmp would import pysmi, with jinja2 and
        # lark (~9 MiB), wherever it happens to be installed.
        sys.modules.setdefault("pysmi", None)  # type: ignore[arg-type]
        from probes.snmp.service import SnmpService
        from probes.snmp.values import ProbeFacts

        assert self.config.snmp is not None
        facts = ProbeFacts(self.config.probe_id, self.config.mission, self.outbox.outbox_id,
                           self.started)
        try:
            self.snmp = SnmpService(self.config.snmp, self.states, facts, self.outbox)
        except ValueError as exc:  # a key or community file whose content is refused
            raise OSError(errno.EINVAL, f"snmp: {exc}") from exc
        self.metrics.snapshot.snmp = self.snmp
        await self.snmp.start()

    async def run(self) -> None:
        self.pusher.token = await credential(self.config)
        icmp.engine(self.config.icmp)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        stop_metrics = None
        if self.config.metrics is not None:
            await self.metrics.refresh(self)
            stop_metrics = self.metrics.serve(self.config.metrics.host,
                                              self.config.metrics.port)
        if self.config.snmp is not None:
            await self._start_snmp()
        self.schedule()
        pusher = asyncio.create_task(self.pusher.run(), name="http-push")
        central = asyncio.create_task(self._follow_central_checks(), name="central-checks")
        figures = asyncio.create_task(self._refresh_metrics(), name="metrics")
        stats = await self.outbox.stats()
        if self.snmp is not None:
            _give_back_freed_heap()
        log.info("probe %s (%s) started: %d checks (%d from the centre, %d of the local "
                 "side), outbox %s holds %d results (seq %d)", self.config.probe_id,
                 self.config.mission, len(self._all_checks()), len(self.central.checks),
                 len(self.local.checks), self.config.outbox, stats.depth, stats.last_seq)
        done = asyncio.create_task(stop.wait())
        await asyncio.wait([pusher, done], return_when=asyncio.FIRST_COMPLETED)
        # The rounds under way are cut short: their results so far are in the outbox.
        await self.scheduler.stop()
        await self.paths.close()
        failed = pusher.exception() if pusher.done() and not pusher.cancelled() else None
        if self.snmp is not None:
            await self.snmp.stop()
        # Every task ends before the outbox closes: a round cut short must not write to a
        # closed outbox, and asyncio.run would otherwise cancel them after we return.
        others = {central, figures, *asyncio.all_tasks()} - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self.pusher.transport.close()
        if stop_metrics is not None:
            stop_metrics()
        if failed is not None:
            raise failed
        icmp.engine().close()
        self.outbox.close()
        log.info("probe %s stopped; unacknowledged results stay in the outbox",
                 self.config.probe_id)


def _give_back_freed_heap() -> None:
    """Building pysnmp's engine and MIB tables frees much of the heap it used, and glibc
    keeps those pages mapped until told: handing them back (1.6 MiB) keeps a probe with
    the SNMP agent within its memory budget on a small board (docs/benchmarks.md). Not
    done without SNMP: there, importing ctypes costs more than it gives back."""
    import ctypes

    # Not glibc (musl, macOS): there is no malloc_trim, and nothing to hand back.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
