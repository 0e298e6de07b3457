"""The collector and real probes over SNMP, in the lab.

FRA reports over HTTP and is also polled over SNMP (v3 authPriv): whichever path brings a
round first stores it, the other finds it stored, so every seq is stored exactly once.
KEN reports by SNMP notifications only (its HTTP collector URL leads nowhere): a cut makes
its probe confirm a failure and send a checkDown inform, retried until the cut ends; the
collector records `down` from the measured time of the change, then `up` on checkUp."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

import pytest

from collector.store.database import Store
from tests.support import wait_for
from tests.support.spine import Collector, Probe, assert_exactly_once

pytestmark = [pytest.mark.netlab, pytest.mark.slow]

AGENT_PORT = 1161  # inside each mission's namespace
RECEIVER_PORT = 1162  # inside the centre's
POLLED = "read from the probe's SNMP agent"


def user(name: str) -> dict:
    return {"name": name, "auth_key": f"{name}-auth-passphrase",
            "priv_key": f"{name}-priv-passphrase"}


def tcp_check(target) -> dict:
    return {"id": "internet-tcp", "kind": "tcp", "target": target.ipv4, "port": 80,
            "interval_s": 1, "timeout_s": 0.5, "confirm_count": 2, "confirm_interval_s": 0.3}


def intervals(collector: Collector, mission: str, check: str) -> list:
    store = Store(collector.database)
    try:
        return [(r.started_at, r.state, r.cause) for r in store.intervals(mission, check)]
    finally:
        store.close()


def failed_confirmations(probe: Probe, since: float) -> int:
    """Failed confirmation rounds started after `since`, from the probe's outbox (a probe
    whose HTTP push leads nowhere keeps every result there)."""
    db = sqlite3.connect(probe.outbox_path)
    try:
        bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM outbox")]
    finally:
        db.close()
    return sum(1 for m in bodies if m["confirmation"] and not m["ok"]
               and datetime.fromisoformat(m["started_at"]).timestamp() > since)


def test_polled_and_pushed_once_and_an_snmp_only_mission(lab, tmp_path):
    fra, ken = lab.add_mission("FRA"), lab.add_mission("KEN")
    target = lab.add_target()
    lab.start_responders(tcp_ports=(80,))
    centre = lab.centre.ipv4
    collector = Collector(lab, tmp_path, config={"snmp": {
        "receiver": {"host": centre, "port": RECEIVER_PORT,
                     "senders": [{"probe_id": "ken-1", "user": user("ken1")}]},
        "probes": [{"probe_id": "fra-1", "mission": "FRA", "address": fra.ipv4,
                    "port": AGENT_PORT, "user": user("fra1"), "interval_s": 1,
                    "timeout_s": 1, "retries": 1}],
    }})
    collector.start()
    # HTTP batches wait up to 3 s, polls come every second: both paths bring rounds.
    fra_probe = Probe(lab, fra, tmp_path, collector, [tcp_check(target)],
                      batch_max_age_s=3, snmp={
                          "agent": {"listen": f"{fra.ipv4}:{AGENT_PORT}"},
                          "users": [user("fra1")]})
    ken_probe = Probe(lab, ken, tmp_path, collector, [tcp_check(target)],
                      urls=["http://127.0.0.1:9/"], snmp={  # nothing listens: SNMP only
                          "users": [user("ken1")],
                          "notify": [{"name": "collector", "address": f"{centre}:{RECEIVER_PORT}",
                                      "user": "ken1", "timeout_s": 1, "retries": 15}]})
    fra_probe.start()
    ken_probe.start()

    def polled() -> list:
        return [r for r in collector.results("fra-1") if r.detail == POLLED]

    wait_for(lambda: len(polled()) >= 3, 60, "three rounds stored from polls")

    # KEN: up from its first confirmed round (the probe notifies the change from unknown).
    wait_for(lambda: [s for _t, s, _c in intervals(collector, "KEN", "internet-tcp")][-1:]
             == ["up"], 60, "KEN up from a checkUp")
    cut_at = time.time()
    lab.cut(ken)
    # Once the probe has confirmed the failure its inform is retried until the cut ends.
    wait_for(lambda: failed_confirmations(ken_probe, cut_at) >= 2, 30,
             "KEN's probe to confirm the failure")
    time.sleep(2)  # the inform goes out into the cut at least once
    lab.restore(ken)
    restored_at = time.time()
    history = wait_for(
        lambda: (h := intervals(collector, "KEN", "internet-tcp"))
        and [s for _t, s, _c in h][-2:] == ["down", "up"] and h, 60,
        "KEN down (checkDown, retried over the cut) and up again (checkUp)")
    down_at, cause = [(t, c) for t, s, c in history if s == "down"][-1]
    assert cause.startswith("snmp checkDown (")
    # Down from when the probe measured the change, not from when the inform got through.
    assert cut_at - 1 <= down_at < restored_at
    assert not collector.results("ken-1")  # no round came by HTTP or poll: notifications only

    wait_for(fra_probe.drained, 60, "FRA's outbox to drain over HTTP")
    fra_probe.stop()
    ken_probe.stop()
    stored = assert_exactly_once(collector, fra_probe)
    assert polled() and len(polled()) < len(stored)  # both paths stored rounds
    by_seq = {r.seq: r for r in stored}
    for r in polled():  # the same round, whichever path stored it
        assert (r.check_id, r.kind, r.target, r.check_group) == (
            "internet-tcp", "tcp", target.ipv4, "internet")
        assert by_seq[r.seq].outbox_id == stored[0].outbox_id
