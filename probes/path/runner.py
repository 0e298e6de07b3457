"""The probe's side of path recording (docs/path.md): when to record, the subprocess that
does it, and handing the result to the check's next measurement.

A recording is triggered by a confirmed failure of a check (`failed`), at most one per
check per `min_period_s`, and, while the check succeeds, every `baseline_every_s`
(`after_round`); a baseline never holds a failure's recording back. One runs at a time
for the whole probe. It runs `python -m probes.path` with a
hard timeout, so scapy and its memory leave with the subprocess. The record waits in
memory until the check's next result, which carries it (`attach`): results are never held
back for a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import ValidationError

from probes.path.settings import PathSettings
from unhindered.checks.http import DEFAULT_PORTS
from unhindered.measurement import AnyMeasurement
from unhindered.path import PathMethod, PathRecord, Trigger
from unhindered.probing import CheckBase
from unhindered.probing.base import ResolveError, resolve

log = logging.getLogger(__name__)
LOCAL_GROUP = "local"  # the mission's own gateway and resolver: one hop, nothing to record


def method_for(check: CheckBase) -> tuple[str, PathMethod, int | None]:
    """(host, method, port) of a check's path: what the check itself sends, so that a
    filter on the check's protocol or port shows in the path. icmp checks: ICMP echo;
    tcp: TCP SYN to the check's port; http: TCP SYN to the URL's port; dns: UDP to the
    resolver's port (a DNS query)."""
    kind = check.kind  # type: ignore[attr-defined]
    if kind == "icmp":
        return check.target, "icmp", None
    if kind == "tcp":
        return check.target, "tcp", check.port  # type: ignore[attr-defined]
    if kind == "http":
        parts = urlsplit(check.target)
        return parts.hostname or "", "tcp", parts.port or DEFAULT_PORTS[parts.scheme]
    if kind == "dns":
        return check.target, "udp", check.port  # type: ignore[attr-defined]
    raise ValueError(f"no path method for check kind {kind!r}")


class PathRecorder:
    def __init__(self, settings: PathSettings, python: str = sys.executable) -> None:
        self.settings = settings
        self.python = python
        self._checks: dict[str, CheckBase] = {}
        # check id -> monotonic time of its last recording for a failure, for a baseline
        self._last_failure: dict[str, float] = {}
        self._last_baseline: dict[str, float] = {}
        self._pending: dict[str, PathRecord] = {}
        self._queued: set[str] = set()
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.recorded = 0  # recordings that produced a record
        self.bytes_sent = 0
        self.bytes_received = 0

    def configure(self, checks: Iterable[CheckBase]) -> None:
        """The checks the probe runs now; paths of checks gone are dropped."""
        self._checks = {c.id: c for c in checks if c.group != LOCAL_GROUP}
        for check_id in set(self._pending) - set(self._checks):
            del self._pending[check_id]

    def reconfigure(self, settings: PathSettings) -> None:
        self.settings = settings

    # --- triggers ---

    def failed(self, check_id: str) -> None:
        """The check's failure is confirmed: record its path now (if allowed)."""
        self._start(check_id, "failure")

    def after_round(self, m: AnyMeasurement) -> None:
        """A round ended: a successful one may be due for a baseline."""
        every = self.settings.baseline_every_s
        if not m.ok or every is None or m.confirmation:
            return
        last = self._last_baseline.get(m.check_id)
        if last is None or time.monotonic() - last >= every:
            self._start(m.check_id, "baseline")

    def _start(self, check_id: str, trigger: Trigger) -> None:
        if not self.settings.enabled or check_id in self._queued:
            return
        check = self._checks.get(check_id)
        if check is None:
            return
        now = time.monotonic()
        if trigger == "failure":
            last = self._last_failure.get(check_id)
            if last is not None and now - last < self.settings.min_period_s:
                return
            self._last_failure[check_id] = now
        else:
            self._last_baseline[check_id] = now
        self._queued.add(check_id)
        task = asyncio.get_running_loop().create_task(
            self._record(check, trigger), name=f"path-{check_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the recording ---

    async def _record(self, check: CheckBase, trigger: Trigger) -> None:
        try:
            async with self._one_at_a_time:
                record = await self.record(check, trigger)
            if record is not None and check.id in self._checks:
                self._pending[check.id] = record
                self.recorded += 1
                self.bytes_sent += record.bytes_sent
                self.bytes_received += record.bytes_received
                log.info("path to %s (check %s, %s): %s", record.address, check.id, trigger,
                         "reached" if record.reached else
                         f"stops after TTL {record.stopped_after_ttl}")
        except Exception:  # a recording must never stop the measurements
            log.exception("path recording for check %s failed", check.id)
        finally:
            self._queued.discard(check.id)

    async def record(self, check: CheckBase, trigger: Trigger) -> PathRecord | None:
        """Runs one recording in a subprocess; None when it could not run."""
        host, method, port = method_for(check)
        try:
            address = await resolve(host, check.ip_version)
        except ResolveError as exc:
            log.info("no path for check %s: %s", check.id, exc)
            return None
        s = self.settings
        argv = [self.python, "-m", "probes.path", "--address", str(address),
                "--method", method, "--max-hops", str(s.max_hops), "--wait", str(s.wait_s),
                "--trigger", trigger]
        if port is not None:
            argv += ["--port", str(port)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), s.timeout_s)
        except TimeoutError:
            log.warning("path recording for check %s killed after %s s", check.id,
                        s.timeout_s)
            return None
        finally:
            if proc.returncode is None:  # timed out, or the probe stops
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            log.warning("path recording for check %s failed (%s): %s", check.id,
                        proc.returncode, err.decode(errors="replace").strip()[-500:])
            return None
        try:
            record = PathRecord.model_validate_json(out.strip().splitlines()[-1])
        except (ValidationError, IndexError) as exc:
            log.warning("path recording for check %s printed no record: %s", check.id, exc)
            return None
        if record.error is not None:
            log.warning("path recording for check %s: %s", check.id, record.error)
        return record

    # --- handing it over ---

    def attach(self, m: AnyMeasurement) -> AnyMeasurement:
        """`m` with the check's recorded path, if one waits; each path goes out once."""
        record = self._pending.pop(m.check_id, None)
        return m if record is None else m.model_copy(update={"path": record})

    async def close(self) -> None:
        """Stops recordings under way (their subprocesses are killed)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
