"""Issue 12, case 10 (the collector's side): the centre's own downtime must never read as
the missions' silence. Silence is counted from the newer of a check's last round and the
time the collector began to listen; a mission is not `unknown` (nor MissionProbeSilent)
for what the collector itself could not hear, nor for a first result that says nothing
of its access (the probe's own gateway). Tested with the real Timelines and AlertPusher
(its observer), and with a Collector restarted over the same store."""

from __future__ import annotations

import time

from collector.alerting.amapi import iso
from collector.alerting.push import AlertPusher
from collector.config import AlertingSettings, CollectorConfig, RetentionSettings
from collector.core import Collector
from collector.state.hysteresis import Policy
from collector.state.timeline import Timelines
from collector.store.database import Store
from collector.store.schema import access_intervals
from tests.integration.test_store import T0, batch_of, history, ingest

# Nothing listens there (loopback, the discard port): the pusher's posts fail and are
# logged; what it wants to fire is read from it.
NO_ALERTMANAGER = "http://127.0.0.1:9"


def silent_alerts(pusher: AlertPusher) -> list[dict]:
    return [a for a in pusher._wanted.values()
            if a["labels"]["alertname"] == "MissionProbeSilent"]


def restarted(store, at: float) -> tuple[Timelines, AlertPusher]:
    """A collector's Timelines rebuilt from the store, listening since `at`."""
    timelines = Timelines(store, lambda _mission: Policy())
    pusher = AlertPusher(NO_ALERTMANAGER, check_states=timelines.check_states)
    timelines.observers.append(pusher.observe)
    timelines.load(store.latest_per_check())
    timelines.listening_since = at
    return timelines, pusher


def test_a_restart_does_not_make_missions_silent_while_their_probes_retry(any_store):
    # Rounds every 10 s up to 100; the collector stops at 100 and starts again at 200.
    ingest(any_store, Timelines(any_store, lambda _m: Policy()),
           batch_of([(t, True) for t in range(0, 101, 10)]))
    timelines, pusher = restarted(any_store, T0 + 200)
    try:
        # Its first silence checks: the probe is still in its retry back-off.
        for now in (202, 204, 215, 230):
            assert timelines.tick(T0 + now) == set()
        assert silent_alerts(pusher) == []
        assert timelines.access[("FRA", "*")] == ("up", T0)
        # The probe measured all along; its queue arrives.
        ingest(any_store, timelines,
               batch_of([(t, True) for t in range(110, 231, 10)], first_seq=12))
        assert timelines.tick(T0 + 235) == set()
        assert history(any_store) == [(0, None, "up")]
        assert history(any_store, "*", table=access_intervals) == [(0, None, "up")]
        assert silent_alerts(pusher) == []
    finally:
        pusher.close()


def test_a_probe_that_never_comes_back_is_unknown_from_its_last_round(any_store):
    """What the history says of the collector's downtime when the probe stays silent: the
    unknown period begins where the rounds stopped plus the allowance (as if the collector
    had listened), but it is decided, and the alert raised, only once the collector has
    itself listened for the allowance."""
    ingest(any_store, Timelines(any_store, lambda _m: Policy()),
           batch_of([(t, True) for t in range(0, 101, 10)]))
    timelines, pusher = restarted(any_store, T0 + 200)
    try:
        assert timelines.tick(T0 + 230) == set()  # listened 30 s: not yet more
        assert silent_alerts(pusher) == []
        assert timelines.tick(T0 + 231) == {"FRA"}
        assert history(any_store) == [(0, 130, "up"), (130, None, "unknown")]
        assert history(any_store, "*", table=access_intervals) == [
            (0, 130, "up"), (130, None, "unknown")]
        [alert] = silent_alerts(pusher)
        assert alert["startsAt"] == iso(T0 + 130)
        [unknown] = [r for r in any_store.intervals("FRA", "internet-icmp")
                     if r.state == "unknown"]
        assert "not listening" in unknown.cause
    finally:
        pusher.close()


def test_a_probes_first_result_from_its_own_gateway_says_nothing_of_access(any_store):
    timelines = Timelines(any_store, lambda _mission: Policy())
    pusher = AlertPusher(NO_ALERTMANAGER, check_states=timelines.check_states)
    timelines.observers.append(pusher.observe)
    try:
        # The probe's first result: its gateway (diagnosis, not access).
        ingest(any_store, timelines, batch_of([(0, True)], check="local-gateway",
                                              group="local"))
        timelines.tick(T0 + 6)
        assert history(any_store, "*", table=access_intervals) == []
        assert ("FRA", "*") not in timelines.access
        assert silent_alerts(pusher) == []
        # Then its first access round: access begins there.
        ingest(any_store, timelines, batch_of([(6, True)], first_seq=2))
        assert history(any_store, "*", table=access_intervals) == [(6, None, "up")]
        assert silent_alerts(pusher) == []
        # A mission whose only check has gone silent is unknown, as before.
        assert timelines.tick(T0 + 100) == {"FRA"}
        assert history(any_store, "*", table=access_intervals) == [
            (6, 36, "up"), (36, None, "unknown")]
        assert len(silent_alerts(pusher)) == 1
    finally:
        pusher.close()


async def test_a_collector_restarted_over_the_same_store_calls_no_mission_silent(any_store):
    config = CollectorConfig(alerting=AlertingSettings(alertmanager_url=NO_ALERTMANAGER),
                             retention=RetentionSettings(raw_days=3650))
    start = time.time() - T0  # batch_of's times are seconds after T0
    first = Collector(config, Store(any_store.url))
    await first.start()
    try:
        await first.store_results(batch_of([(start - 130 + t, True) for t in range(0, 31, 10)]))
    finally:
        await first.stop()
    # Down for 100 s; the probe measured and queued every round meanwhile.
    second = Collector(config, Store(any_store.url))
    await second.start()
    try:
        await second.in_db(second.timelines.tick, time.time())
        assert silent_alerts(second.pusher) == []
        assert second.timelines.access[("FRA", "*")][0] == "up"
        queued = [(start - 90 + t, True) for t in range(0, 91, 10)]
        await second.store_results(batch_of(queued, first_seq=5))
        await second.in_db(second.timelines.tick, time.time())
        assert silent_alerts(second.pusher) == []
        assert [s for _start, _end, s in history(any_store, "*", table=access_intervals)] \
            == ["up"]
    finally:
        await second.stop()
