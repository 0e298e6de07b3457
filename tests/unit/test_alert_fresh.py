"""A new direct alert is posted again at every re-check for its first FRESH_S
(collector/alerting/push.py): Prometheus's resolved copy of an earlier alert with the
same labels, re-sent for 15 minutes, would otherwise replace it in Alertmanager before
its first e-mail. What is queued for posting is read from the pusher's queue."""

from __future__ import annotations

import queue

from collector.alerting.amapi import iso
from collector.alerting.push import FRESH_S, AlertPusher


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


def queued(pusher: AlertPusher) -> list[list[dict]]:
    out = []
    while True:
        try:
            out.append(pusher._queue.get_nowait())
        except queue.Empty:
            return out


def test_a_new_alert_is_posted_again_until_it_is_no_longer_fresh():
    clock = Clock()
    pusher = AlertPusher("http://127.0.0.1:9", resend_s=3_600, clock=clock)
    # The posting thread stopped first: what is queued stays for the test to read, and
    # nothing leaves (swapping its queue instead raced with the thread's first read).
    pusher.close()
    assert not pusher._thread.is_alive()
    pusher.observe("FRA", "*", "unknown", clock.now)
    [first] = queued(pusher)
    assert [a["labels"]["alertname"] for a in first] == ["MissionProbeSilent"]
    clock.now += 1
    pusher.reconcile()
    [again] = queued(pusher)
    assert again[0]["labels"] == first[0]["labels"]
    assert again[0]["startsAt"] == first[0]["startsAt"]
    clock.now += FRESH_S
    pusher.reconcile()
    assert queued(pusher) == []  # from now on, every resend_s only
    pusher.observe("FRA", "*", "up", clock.now)
    [ended] = queued(pusher)
    assert ended[0]["labels"] == first[0]["labels"] and ended[0]["endsAt"] == iso(clock.now)
