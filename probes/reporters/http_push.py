"""Pushes the outbox to the collector in batches and deletes only what it acknowledged.

Batches leave when they are full or their oldest result is old enough; each request is
gzipped and carries the probe's bearer token; the collector URLs are tried in order;
after every URL failed the reporter waits an exponentially growing, jittered delay, which
a round that succeeds meanwhile cuts short (RETRY_ON_SUCCESS_S).
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
from probes.transport import Transport, TransportError
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
        self.transport = Transport(settings.timeout_s)
        self.outbox = outbox
        self.probe_id = probe_id
        self.mission = mission
        self.batch_size = settings.batch_max_size
        self._wake = asyncio.Event()
        self._succeeded = asyncio.Event()  # a round succeeded since the last failed push
        self.retry_on_success_s = RETRY_ON_SUCCESS_S
        self._backoff = settings.backoff_initial_s
        self.last_error: str | None = None
        self.failures = 0  # batches no URL accepted, for the probe's own metrics
        self.rejected: dict[str, int] = {}  # results the collector rejected, by reason
        # The checks the probe runs and since when (Probe.schedule), sent with every batch
        # so that the collector retires those it no longer runs (docs/protocol.md).
        self.check_list: CheckList | None = None

    def reconfigure(self, settings: CollectorSettings, token: str) -> None:
        """New URLs, token and limits (a config reload); the next request uses them."""
        self.settings = settings
        self.token = token
        self.batch_size = settings.batch_max_size
        self._backoff = min(self._backoff, settings.backoff_max_s)
        self.transport.timeout_s = settings.timeout_s

    def wake(self, success: bool = False) -> None:
        """Called after each append: a full batch may now be ready. `success`: the result
        is a round that succeeded beyond the mission's own network, evidence that the way
        to the centre may work again (it ends a back-off early)."""
        self._wake.set()
        if success:
            self._succeeded.set()

    async def run(self) -> None:
        while True:
            await self._wait_for_batch()
            await self.push_once()

    async def _wait_for_batch(self) -> None:
        while True:
            depth, oldest = await self.outbox.pending()
            if depth >= self.batch_size:
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
            ack = await self._post(f"{str(url).rstrip('/')}/api/v1/results", body, len(rows))
            if ack is None:
                continue
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
            answer = await self.transport.request("POST", url, body, headers)
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
