"""Direct alerts: the collector posts confirmed access changes to Alertmanager itself.

Through Prometheus an outage waits for a scrape, a rule evaluation and the rule's `for:`;
posted here it reaches Alertmanager as soon as the collector's state machine confirms it.
The alerts carry exactly the labels of the rule alerts (alerts/unhindered.rules.yml:
alertname, mission, [group,] severity, scope), so Alertmanager holds one alert whoever
posts first; Prometheus remains the safety net when this path fails.

- `MissionAccessDown{mission,group}` while a group's access is `down`;
- `MissionProbeSilent{mission}` while the mission's overall access is `unknown`;
- `TargetDownFleetWide{target,group}` while a target is down from many missions (the
  rule's thresholds, FLEET_MIN_CHECKS and FLEET_MIN_SHARE).

A MissionAccessDown that a fleet-wide outage of its group explains is held back, not
posted: Alertmanager sends an alert older than `group_wait` at once, before the
TargetDownFleetWide that would inhibit it could apply, so posting it would mail every
mission about the target's outage. It is posted if the mission is still down once the
fleet-wide outage is over (FLEET_KEEP_S after the test last held). Alerts already posted
stay until their outage ends (resolving them early would tell the mission it is back).

A mission whose probe is catching up (its newest batch said results were still queued
behind it: `backlog` > 0) is being told its past, not its present: an outage in its
backlog may be over already. Its new alerts are held until a batch with backlog 0 has
been applied, and only those still wanted then are posted; an outage that began and
ended during the catch-up is never posted. Alertmanager would mail such an alert at
once (it started long before group_wait), telling the mission of an outage after its
end. A hold ends anyway when no batch with a backlog has come for CATCHUP_IDLE_S (the
probe's link failed again mid-drain: the silence is news) or when it has lasted
CATCHUP_MAX_S (a drain that never ends must not hide a real outage). A catching-up
mission's checks do not count towards a fleet-wide outage either.

Firing alerts are posted again every `resend_s` with an end 3 periods ahead, so they
lapse by themselves if the collector dies (CollectorDown then pages); a recovery posts
the alert with its end set to now, which resolves it. A new alert is also posted again at
every re-check (every second) for its first FRESH_S: Prometheus goes on sending the
resolved copy of an earlier alert with the same labels for 15 minutes, every minute, and
Alertmanager takes a resolved alert that does not overlap the firing one in time as
replacing it; lost that way before its first e-mail, a new outage would wait for the next
resend, or for the rules' own `for:` (measured: 47 and 68 s instead of 20-25 s from the
cut, docs/benchmarks.md). Posting runs on its own thread:
the state machine never waits for Alertmanager.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from collector.alerting.amapi import AlertmanagerError, call, iso
from collector.state.timeline import ALL_GROUPS

log = logging.getLogger(__name__)
_STOP = object()
# As TargetDownFleetWide in alerts/unhindered.rules.yml (a test holds them equal):
# down from at least this many checks, and at least this share of those checking it.
FLEET_MIN_CHECKS = 3
FLEET_MIN_SHARE = 0.5
# ... and, as its keep_firing_for, held for this long after the test last held: missions
# come back one by one, and the last ones must not be told of the target's outage then.
FLEET_KEEP_S = 60.0
# A catch-up's hold ends, whatever the backlog, when no batch with a backlog has come for
# this long (batches of a drain follow each other within seconds; a probe whose link
# failed again cannot report) ...
CATCHUP_IDLE_S = 30.0
# ... or when it has lasted this long (a backlog that never drains).
CATCHUP_MAX_S = 600.0
# A new alert is posted again at every re-check for this long: past Alertmanager's
# group_wait (5 s as shipped) and its first e-mail, with room for a slow one.
FRESH_S = 20.0

Key = tuple[tuple[str, str], ...]
CheckStates = Callable[[], Iterable[tuple[str, str, str, str]]]


@dataclass
class _Hold:
    """A probe catching up: when its first and newest batch with a backlog came, and
    whether the newest batch said it was drained (the hold ends once that is applied)."""
    began: float
    last: float
    drained: bool = False


def alert_for(mission: str, group: str, state: str) -> tuple[dict[str, str], bool]:
    """The alert's labels for this (mission, group), and whether `state` makes it fire."""
    if group == ALL_GROUPS:
        labels = {"alertname": "MissionProbeSilent", "mission": mission,
                  "severity": "critical", "scope": "mission"}
        return labels, state == "unknown"
    labels = {"alertname": "MissionAccessDown", "mission": mission, "group": group,
              "severity": "critical", "scope": "mission"}
    return labels, state == "down"


def fleet_wide(checks: Iterable[tuple[str, str, str, str]]) -> dict[tuple[str, str], int]:
    """(target, group) down fleet-wide, with how many checks see it down, from
    (mission, group, target, state) of every check."""
    down: dict[tuple[str, str], int] = {}
    total: dict[tuple[str, str], int] = {}
    for _mission, group, target, state in checks:
        key = (target, group)
        total[key] = total.get(key, 0) + 1
        if state == "down":
            down[key] = down.get(key, 0) + 1
    return {key: n for key, n in down.items()
            if n >= FLEET_MIN_CHECKS and n >= FLEET_MIN_SHARE * total[key]}


def _fleet_alert(target: str, group: str, down: int, since: float) -> dict[str, Any]:
    return {"labels": {"alertname": "TargetDownFleetWide", "target": target, "group": group,
                       "severity": "critical", "scope": "fleet", "mission": "*"},
            "annotations": {
                "summary": f"{target} ({group}) is down from {down} missions",
                "description": f"{down} missions fail to reach {target} at once: the "
                               "target or the path to it is down, not the missions' links.",
                "runbook_url": "docs/runbook.md#targetdownfleetwide"},
            "startsAt": iso(since)}


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
                 clock: Callable[[], float] = time.time,
                 check_states: CheckStates | None = None,
                 fleet_keep_s: float = FLEET_KEEP_S,
                 catchup_idle_s: float = CATCHUP_IDLE_S,
                 catchup_max_s: float = CATCHUP_MAX_S) -> None:
        self.url = url
        self.resend_s = resend_s
        self.clock = clock
        # Every check's state, to tell a fleet-wide outage (Timelines.check_states).
        self.check_states = check_states
        self.fleet_keep_s = fleet_keep_s
        self.catchup_idle_s = catchup_idle_s
        self.catchup_max_s = catchup_max_s
        # (mission, probe) -> its catch-up; written on the event loop, read on the database
        # thread, under self._lock.
        self._holds: dict[tuple[str, str], _Hold] = {}
        # (target, group) -> (checks down, when the test last held) of fleet-wide outages.
        self._fleet: dict[tuple[str, str], tuple[int, float]] = {}
        self._wanted: dict[Key, dict[str, Any]] = {}  # mission alerts that should fire
        self._posted: dict[Key, dict[str, Any]] = {}  # and those posted as firing
        self._first_posted: dict[Key, float] = {}  # when each of those was first posted
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-push", daemon=True)
        self._thread.start()

    def observe(self, mission: str, group: str, state: str, since: float) -> None:
        """A Timelines observer (runs on the database thread: only queues)."""
        labels, firing = alert_for(mission, group, state)
        key = _key(labels)
        if firing and key not in self._wanted:
            self._wanted[key] = {"labels": labels, "annotations": _annotations(labels, since),
                                 "startsAt": iso(since)}
        elif not firing:
            self._wanted.pop(key, None)
        else:
            return
        self.reconcile()

    def note_backlog(self, mission: str, probe: str, backlog: int | None) -> None:
        """A batch from `probe`, before its rounds are applied (Collector.store_results):
        a backlog starts (or prolongs) the mission's hold, so that the state changes of
        these rounds are held; backlog 0 ends it once this batch is applied (note_applied).
        None (an SNMP poll, an older probe) says nothing either way."""
        if backlog is None:
            return
        now = self.clock()
        with self._lock:
            hold = self._holds.get((mission, probe))
            if backlog > 0 and hold is None:
                log.info("%s: probe %s is catching up (%d results queued): new alerts are "
                         "held until it is done", mission, probe, backlog)
                self._holds[(mission, probe)] = _Hold(now, now)
            elif backlog > 0:
                hold.last, hold.drained = now, False
            elif hold is not None:
                hold.drained = True

    def note_applied(self, mission: str, probe: str) -> None:
        """The same batch, its rounds applied: a drained probe's hold ends. The next
        reconcile (on the database thread, within seconds) posts what is still wanted."""
        with self._lock:
            hold = self._holds.get((mission, probe))
            if hold is not None and hold.drained:
                del self._holds[(mission, probe)]
                log.info("%s: probe %s caught up after %.0f s", mission, probe,
                         self.clock() - hold.began)

    def _catching_up(self, now: float) -> set[str]:
        """Missions held now; drops the holds whose bound has passed."""
        with self._lock:
            for (mission, probe), hold in list(self._holds.items()):
                if now - hold.last > self.catchup_idle_s or now - hold.began > self.catchup_max_s:
                    del self._holds[(mission, probe)]
                    log.warning("%s: probe %s still catching up after %.0f s (last batch %.0f s "
                                "ago): its alerts are no longer held", mission, probe,
                                now - hold.began, now - hold.last)
            return {mission for mission, _probe in self._holds}

    def reconcile(self) -> None:
        """Posts what changed. Called on every access change, and periodically (on the
        database thread, like the observer) so that a hold ends when its time is up."""
        now = self.clock()
        catching_up = self._catching_up(now)
        if self.check_states is not None and (self._fleet or any(
                a["labels"]["alertname"] == "MissionAccessDown"
                for a in self._wanted.values())):
            live = (c for c in self.check_states() if c[0] not in catching_up)
            for key, down in fleet_wide(live).items():
                self._fleet[key] = (down, now)
        self._fleet = {k: v for k, v in self._fleet.items()
                       if now - v[1] <= self.fleet_keep_s}
        # As Alertmanager's inhibition (equal: group): any fleet-wide target of the group.
        explained = {group for _target, group in self._fleet}
        # Posted alerts stay while wanted; a new one waits while its mission catches up,
        # and a MissionAccessDown while a fleet-wide outage of its group explains it.
        wanted = {k: a for k, a in self._wanted.items()
                  if k in self._posted or (
                      a["labels"]["mission"] not in catching_up
                      and (a["labels"]["alertname"] != "MissionAccessDown"
                           or a["labels"]["group"] not in explained))}
        for (target, group), (down, _seen) in self._fleet.items():
            alert = _fleet_alert(target, group, down, now)
            key = _key(alert["labels"])
            if key in self._posted:  # keep when it started; refresh the count
                alert["startsAt"] = self._posted[key]["startsAt"]
            wanted[key] = alert
        with self._lock:
            ended = [{**a, "endsAt": iso(now)} for k, a in self._posted.items()
                     if k not in wanted]
            started = [self._with_end(a) for k, a in wanted.items()
                       if self._posted.get(k) != a]
            self._first_posted = {k: self._first_posted.get(k, now) for k in wanted}
            # Fresh alerts again, lest a stale resolved copy replace them (above).
            started += [self._with_end(a) for k, a in wanted.items()
                        if self._posted.get(k) == a
                        and now - self._first_posted[k] < FRESH_S]
            self._posted = wanted
        # The fleet-wide alerts first, so Alertmanager knows them before the rest.
        started.sort(key=lambda a: a["labels"]["alertname"] != "TargetDownFleetWide")
        if ended or started:
            self._queue.put(started + ended)

    def _with_end(self, alert: dict[str, Any]) -> dict[str, Any]:
        return {**alert, "endsAt": iso(self.clock() + 3 * self.resend_s)}

    def _run(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=self.resend_s)
            except queue.Empty:
                with self._lock:
                    batch = [self._with_end(a) for a in self._posted.values()]
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


def _key(labels: dict[str, str]) -> Key:
    return tuple(sorted(labels.items()))
