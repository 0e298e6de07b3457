"""Issue 12, case 11, end to end: a probe's backlog that holds an outage already over when
it arrives mails nobody, while a live outage still does. A real collector (served on
127.0.0.1, posting its direct alerts), a real Alertmanager configured from the inventory
and an SMTP sink; the probe's batches are posted over HTTP as a probe sends them, with
their `backlog`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from collector.config import AlertingSettings, CollectorConfig
from collector.store.database import Store
from collector.web.app import create_app
from tests.integration.test_alert_delivery import _am_config
from tests.support import require_program
from tests.support.promstack import ALERTMANAGER, alertmanager
from tests.support.smtp_sink import smtp_sink
from tests.support.storage import registered_since
from unhindered.measurement import (
    IcmpFigures,
    IcmpMeasurement,
    encode_batch,
    encode_result,
    with_seq,
)

pytestmark = pytest.mark.timeout(180)
FRA = "noc@fra.example.org"


def round_at(t: float, ok: bool) -> IcmpMeasurement:
    figures = (IcmpFigures(sent=1, received=1, loss_ratio=0, rtt_min_s=0.02, rtt_median_s=0.02,
                           rtt_mean_s=0.02, rtt_max_s=0.02, samples_s=[0.02]) if ok else
               IcmpFigures(sent=1, received=0, loss_ratio=1.0))
    return IcmpMeasurement(
        probe_id="fra-1", mission="FRA", check_id="internet-icmp", group="internet",
        target="127.0.0.1", started_at=datetime.fromtimestamp(t, UTC), duration_s=0.5, ok=ok,
        reason=None if ok else "timeout", figures=figures, interval_s=10)


class Probe:
    """Posts batches as the probe's HTTP reporter does, numbering its results."""

    def __init__(self, url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.url, self.token, self.session = url, token, session
        self.seq = 0

    async def send(self, rounds: list[tuple[float, bool]], backlog: int) -> None:
        results = []
        for t, ok in rounds:
            self.seq += 1
            results.append(with_seq(self.seq, encode_result(round_at(t, ok))))
        body = encode_batch("fra-1", "FRA", "a" * 32, backlog, results)
        async with self.session.post(f"{self.url}api/v1/results", data=body, headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json"}) as answer:
            assert answer.status == 200, await answer.text()


def mentions(sink, text: str) -> list[str]:
    return [m.subject for m in sink.received(FRA) if text in m.subject or text in m.body]


async def wait_mail(sink, text: str, within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if found := mentions(sink, text):
            return found
        await asyncio.sleep(0.2)
    pytest.fail(f"no e-mail to FRA about {text!r}: {[m.subject for m in sink.received()]}")


async def test_a_backlogged_outage_that_is_over_mails_nobody_a_live_one_does(tmp_path):
    require_program(ALERTMANAGER, "prometheus-alertmanager")
    with smtp_sink() as sink, alertmanager(_am_config(tmp_path, sink.smarthost)) as am:
        store = Store(f"sqlite:///{tmp_path / 'collector.sqlite'}")
        store.migrate()
        token = store.add_probe("fra-1", "FRA")
        registered_since(store, time.time() - 3_600)
        config = CollectorConfig(inventory=tmp_path / "inventory.yaml",
                                 alerting=AlertingSettings(alertmanager_url=am.url, resend_s=2))
        server = TestServer(create_app(config, store), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                probe = Probe(str(server.make_url("/")), token, session)
                now = float(int(time.time()))
                # Live: FRA is up. Its results say "every 10 s", so silence is 30 s away.
                await probe.send([(now - 25 + i, True) for i in range(5)], backlog=0)
                # The link was cut from now - 20 to now - 10; the probe kept its results and
                # sends them once it is back, in two batches, the first saying more follow.
                await probe.send([(now - 20 + i, False) for i in range(10)], backlog=9)
                # The rest 4 s later (8 s in the report): Alertmanager's group_wait is 1 s
                # here, so an alert posted with the first batch would be mailed meanwhile.
                await asyncio.sleep(4)
                await probe.send([(now - 10 + i, True) for i in range(9)], backlog=0)
                await asyncio.sleep(5)  # group_wait and group_interval 1 s, and resends 2 s
                assert not mentions(sink, "no access to internet"), \
                    "FRA was mailed about an outage that was over before anyone knew of it"
                assert not am.alerts('alertname="MissionAccessDown"')

                # A live outage: the newest rounds fail, nothing more queued at the probe.
                start = time.time() - 4
                await probe.send([(start + i, False) for i in range(4)], backlog=0)
                found = await wait_mail(sink, "no access to internet", 30)
                assert any(s.startswith("Outage: FRA: no access to internet") for s in found)
        finally:
            await server.close()
            store.close()
