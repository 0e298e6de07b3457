"""Direct alerts: the collector posts confirmed access changes to Alertmanager itself.

Through Prometheus an outage waits for a scrape, a rule evaluation and the rule's `for:`;
posted here it reaches Alertmanager as soon as the collector's state machine confirms it.
The alerts carry exactly the labels of the rule alerts (alerts/unhindered.rules.yml:
alertname, mission, [group,] severity, scope), so Alertmanager holds one alert whoever
posts first; Prometheus remains the safety net when this path fails.

- `MissionAccessDown{mission,group}` while a group's access is `down`;
- `MissionProbeSilent{mission}` while the mission's overall access is `unknown`.

Firing alerts are posted again every `resend_s` with an end 3 periods ahead, so they
lapse by themselves if the collector dies (CollectorDown then pages); a recovery posts
the alert with its end set to now, which resolves it. Posting runs on its own thread:
the state machine never waits for Alertmanager.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from collector.alerting.amapi import AlertmanagerError, call, iso
from collector.timeline import ALL_GROUPS

log = logging.getLogger(__name__)
_STOP = object()


def alert_for(mission: str, group: str, state: str) -> tuple[dict[str, str], bool]:
    """The alert's labels for this (mission, group), and whether `state` makes it fire."""
    if group == ALL_GROUPS:
        labels = {"alertname": "MissionProbeSilent", "mission": mission,
                  "severity": "critical", "scope": "mission"}
        return labels, state == "unknown"
    labels = {"alertname": "MissionAccessDown", "mission": mission, "group": group,
              "severity": "critical", "scope": "mission"}
    return labels, state == "down"


def _annotations(labels: dict[str, str], since: float) -> dict[str, str]:
    mission, since_text = labels["mission"], f"{iso(since)}"
    if labels["alertname"] == "MissionProbeSilent":
        return {"summary": f"{mission}: nothing heard from the mission's probe",
                "description": f"The collector has no measurement from mission {mission} "
                               f"since {since_text}: its Internet link is cut or its probe "
                               "is off.",
                "runbook_url": "docs/runbook.md#missionprobesilent"}
    group = labels["group"]
    return {"summary": f"{mission}: no access to {group}",
            "description": f"Every {group} target of mission {mission} fails from its probe "
                           f"since {since_text}.",
            "runbook_url": "docs/runbook.md#missionaccessdown"}


class AlertPusher:
    def __init__(self, url: str, resend_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.resend_s = resend_s
        self.clock = clock
        self._firing: dict[tuple, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-push", daemon=True)
        self._thread.start()

    def observe(self, mission: str, group: str, state: str, since: float) -> None:
        """A Timelines observer (runs on the database thread: only queues)."""
        labels, firing = alert_for(mission, group, state)
        key = tuple(sorted(labels.items()))
        with self._lock:
            if firing and key not in self._firing:
                alert = {"labels": labels, "annotations": _annotations(labels, since),
                         "startsAt": iso(since)}
                self._firing[key] = alert
                self._queue.put([self._with_end(alert)])
            elif not firing and key in self._firing:
                alert = self._firing.pop(key)
                self._queue.put([{**alert, "endsAt": iso(self.clock())}])

    def _with_end(self, alert: dict[str, Any]) -> dict[str, Any]:
        return {**alert, "endsAt": iso(self.clock() + 3 * self.resend_s)}

    def _run(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=self.resend_s)
            except queue.Empty:
                with self._lock:
                    batch = [self._with_end(a) for a in self._firing.values()]
            if batch is _STOP:
                return
            if batch:
                self._post(batch)

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        try:
            call(self.url, "/alerts", "POST", alerts, timeout=5)
        except AlertmanagerError as exc:
            # The next resend (and Prometheus's rules) cover a lost post.
            log.warning("posting %d alerts to Alertmanager failed: %s", len(alerts), exc)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(5)
