"""Pushes the outbox to the collector in batches and deletes only what it acknowledged.

Batches leave when they are full or their oldest result is old enough; each request is
gzipped and carries the probe's bearer token; the collector URLs are tried in order;
after every URL failed the reporter waits an exponentially growing, jittered delay, which
a round that succeeds meanwhile cuts short (RETRY_ON_SUCCESS_S). When nothing was
acknowledged for `heartbeat_s`, a heartbeat of a few bytes tells the collector the probe
is alive (docs/protocol.md#heartbeat), so that its silence means a cut within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import time

from probes.config import CollectorSettings
from probes.outbox import Outbox
from probes.tls import client_context
from probes.transport import Transport, TransportError
from unhindered.heartbeat import HEARTBEAT_PATH
from unhindered.measurement import (
    ACK_HEADER,
    ACK_WITH_REJECTED,
    Ack,
    CheckList,
    Rejected,
    encode_batch,
)

log = logging.getLogger(__name__)

# After a failed push, a round that succeeds (the mission's link works: the centre may be
# reachable again, or back) ends the back-off early, but no sooner than this after the
# failure: a probe whose link is fine while the collector is down tries about once per
# this time rather than once per back-off (30 s on average at the 60 s ceiling). The
# mission's backlog then reaches a returning collector within this plus one round: for
# checks every 5 s or more, before it counts the mission silent (docs/protocol.md).
RETRY_ON_SUCCESS_S = 5.0


class HttpPusher:
    def __init__(self, settings: CollectorSettings, outbox: Outbox, probe_id: str,
                 mission: str, token: str) -> None:
        self.settings = settings
        self.token = token
        # OSError at start for an unusable TLS file: the probe's command line says which.
        self.transport = Transport(settings.timeout_s, client_context(settings))
        self.outbox = outbox
        self.probe_id = probe_id
        self.mission = mission
        self.batch_size = settings.batch_max_size
        self._wake = asyncio.Event()
        self._succeeded = asyncio.Event()  # a round succeeded since the last failed push
        self._urgent = False  # a confirmed change is queued: push without waiting
        self.retry_on_success_s = RETRY_ON_SUCCESS_S
        self._backoff = settings.backoff_initial_s
        self.last_error: str | None = None
        self.failures = 0  # batches no URL accepted, for the probe's own metrics
        self.rejected: dict[str, int] = {}  # results the collector rejected, by reason
        # The checks the probe runs and since when (Probe.schedule), sent with every batch
        # so that the collector retires those it no longer runs (docs/protocol.md).
        self.check_list: CheckList | None = None
        # When the newest request the collector answered was sent (monotonic): a push it
        # acknowledged, or a heartbeat. The next heartbeat is due heartbeat_s after it.
        self.heard_at = time.monotonic()
        self.heartbeats = 0  # heartbeats the collector answered
        self._heartbeat_refused = False  # an older collector without the route: logged once

    def reconfigure(self, settings: CollectorSettings, token: str) -> None:
        """New URLs, token, limits and TLS files (a config reload); the next request uses
        them. TLS files that cannot be used are refused, and the running ones kept."""
        self.settings = settings
        self.token = token
        self.batch_size = settings.batch_max_size
        self._backoff = min(self._backoff, settings.backoff_max_s)
        self.transport.timeout_s = settings.timeout_s
        try:
            self.transport.tls = client_context(settings)
        except OSError as exc:
            log.error("config reload: the TLS settings stay as they were: %s", exc.strerror)

    def wake(self, success: bool = False, urgent: bool = False) -> None:
        """Called after each append: a full batch may now be ready. `success`: the result
        is a round that succeeded beyond the mission's own network, evidence that the way
        to the centre may work again (it ends a back-off early). `urgent`: a confirmed
        change of a check's outcome is queued, news the centre should have now rather
        than after batch_max_age_s (a back-off still applies)."""
        if urgent:
            self._urgent = True
        self._wake.set()
        if success:
            self._succeeded.set()

    async def run(self) -> None:
        heartbeats = asyncio.create_task(self._heartbeats(), name="heartbeat")
        try:
            while True:
                await self._wait_for_batch()
                await self.push_once()
        finally:
            heartbeats.cancel()

    async def _heartbeats(self) -> None:
        while True:
            due = self.heard_at + self.settings.heartbeat_s - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)  # a push meanwhile moves heard_at on
                continue
            try:
                await self.heartbeat_once()
            except Exception:  # the next one is due a period later all the same
                log.exception("sending a heartbeat failed")

    async def heartbeat_once(self) -> bool:
        """Sends a heartbeat to the first collector URL that takes it; True if one did.
        Failed or not, the next is due a heartbeat period later."""
        sent_at = time.monotonic()
        depth, _oldest = await self.outbox.pending()
        body = f'{{"backlog":{depth}}}'.encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        try:
            for url in self.settings.urls:
                where = f"{str(url).rstrip('/')}{HEARTBEAT_PATH}"
                try:
                    answer = await self.transport.request("POST", where, body, headers,
                                                          idempotent=True)
                except TransportError as exc:
                    log.debug("heartbeat failed: %s", exc)
                    continue
                if answer.status == 204:
                    self.heartbeats += 1
                    return True
                if answer.status in (404, 405):
                    if not self._heartbeat_refused:
                        self._heartbeat_refused = True
                        log.warning("%s answered %d: this collector is older than "
                                    "heartbeats, so a cut is known only after the checks' "
                                    "silent allowance; upgrade it", where, answer.status)
                else:
                    log.info("heartbeat refused: %s answered %d: %s", where, answer.status,
                             answer.text()[:300])
            return False
        finally:
            self.heard_at = max(self.heard_at, sent_at)

    async def _wait_for_batch(self) -> None:
        while True:
            depth, oldest = await self.outbox.pending()
            if depth >= self.batch_size or (depth and self._urgent):
                self._urgent = False
                return
            wait = None
            if depth:
                age = time.time() - (oldest or 0)
                if age >= self.settings.batch_max_age_s:
                    return
                wait = self.settings.batch_max_age_s - age
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def push_once(self) -> bool:
        """Sends one batch of the oldest rows; True when it was acknowledged."""
        rows = await self.outbox.peek(self.batch_size)
        if not rows:
            return True
        depth, _oldest = await self.outbox.pending()
        body = self._body(rows, depth - len(rows))
        for url in self.settings.urls:
            sent_at = time.monotonic()
            ack = await self._post(f"{str(url).rstrip('/')}/api/v1/results", body, len(rows))
            if ack is None:
                continue
            self.heard_at = max(self.heard_at, sent_at)  # the collector heard the probe
            # Never trust an ack beyond what was sent: those rows were not in this batch.
            through = min(ack.acked_through, rows[-1][0])
            await self.outbox.ack(through)
            self._backoff = self.settings.backoff_initial_s
            self.last_error = None
            log.debug("collector acknowledged seqs %d..%d (%d stored, %d duplicates)",
                      rows[0][0], through, ack.stored, ack.duplicates)
            if ack.rejected:
                self._note_rejected([r for r in ack.rejected if r.seq <= through])
            return True
        self.failures += 1
        delay = random.uniform(0, self._backoff)  # full jitter: probes don't march in step
        self._backoff = min(self._backoff * 2, self.settings.backoff_max_s)
        log.warning("no collector accepted the batch (%s); retrying in %.1f s, or sooner "
                    "once a round succeeds", self.last_error, delay)
        await self._back_off(delay)
        return False

    async def _back_off(self, delay: float) -> None:
        """Waits `delay` after a failed push, unless a round succeeds meanwhile: then the
        next try comes at once, but not before `retry_on_success_s` since the failure."""
        loop = asyncio.get_running_loop()
        failed_at = loop.time()
        self._succeeded.clear()  # only a round after this failure is fresh evidence
        try:
            await asyncio.wait_for(self._succeeded.wait(), delay)
        except TimeoutError:
            return
        rest = failed_at + min(delay, self.retry_on_success_s) - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)
        log.info("a round succeeded since the failed push: trying the collector again")

    def _note_rejected(self, rejected: list[Rejected]) -> None:
        """Results the collector will never store, deleted with the rest of the batch:
        kept, they would be sent again for ever and hold back everything behind them."""
        for r in rejected:
            self.rejected[r.reason] = self.rejected.get(r.reason, 0) + 1
        shown = "; ".join(f"seq {r.seq} {r.reason} ({r.detail})" for r in rejected[:5])
        more = f"; and {len(rejected) - 5} more" if len(rejected) > 5 else ""
        log.warning("the collector rejected %d result(s), deleted from the outbox: %s%s",
                    len(rejected), shown, more)

    def _body(self, rows: list[tuple[int, str]], backlog: int) -> bytes:
        # The outbox's running count of dropped results: the collector sees the loss.
        text = encode_batch(self.probe_id, self.mission, self.outbox.outbox_id, backlog,
                            [body for _, body in rows], dropped=self.outbox.dropped,
                            checks=self.check_list)
        return gzip.compress(text.encode(), compresslevel=5)

    async def _post(self, url: str, body: bytes, count: int) -> Ack | None:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            ACK_HEADER: ACK_WITH_REJECTED,  # this probe reads the results rejected alone
        }
        try:
            # Idempotent: the collector stores a (probe, seq) once (docs/protocol.md).
            answer = await self.transport.request("POST", url, body, headers, idempotent=True)
            if answer.status == 200:
                return Ack.model_validate_json(answer.body)
            if answer.status == 413 and self.batch_size > 1:
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("%s: batch of %d too large; now sending %d at a time",
                            url, count, self.batch_size)
            self.last_error = f"{url} answered {answer.status}: {answer.text()[:300]}"
        except (TransportError, ValueError) as exc:
            self.last_error = str(exc)
        log.info("push failed: %s", self.last_error)
        return None
