"""Maintenance windows of the inventory as Alertmanager silences
(`unhindered-collector alertmanager-silences`).

Each window starting within the horizon becomes one silence on `mission="CODE"`, marked
with the window in its comment. Re-running creates none twice: silences already there
(ours, same mission and times) are kept; ours that no window asks for any more (the
inventory changed) are expired. Silences made by people are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.alerting.amapi import call, iso
from collector.inventory.maintenance import occurrences, zone
from collector.inventory.sites import Inventory

CREATED_BY = "unhindered-collector"
MARK = "[unhindered maintenance]"


@dataclass(frozen=True)
class Window:
    mission: str
    start: float
    end: float
    note: str = ""


@dataclass
class SyncResult:
    created: list[Window]
    kept: list[Window]
    expired: list[str]  # silence ids


def wanted(inventory: Inventory, now: float, horizon_s: float) -> list[Window]:
    """Windows in progress or starting within the horizon, per mission, whole (not clipped
    to the horizon, not merged: one silence per window)."""
    out = []
    for mission in inventory.missions:
        tz_name = mission.timezone or inventory.defaults.timezone
        tz = zone(tz_name) if tz_name else None
        for window in mission.maintenance:
            for start, end in occurrences(window, tz, now, now + horizon_s):
                if start < now + horizon_s:
                    out.append(Window(mission.code, start, end, window.note))
    return sorted(out, key=lambda w: (w.mission, w.start))


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _ours(silence: dict) -> Window | None:
    if silence.get("createdBy") != CREATED_BY or MARK not in silence.get("comment", ""):
        return None
    if silence["status"]["state"] == "expired":
        return None
    missions = [m["value"] for m in silence["matchers"]
                if m["name"] == "mission" and m.get("isEqual", True) and not m["isRegex"]]
    if len(missions) != 1:
        return None
    return Window(missions[0], round(_epoch(silence["startsAt"])),
                  round(_epoch(silence["endsAt"])))


def sync(base_url: str, inventory: Inventory, now: float, horizon_s: float) -> SyncResult:
    existing = {}
    for silence in call(base_url, "/silences") or []:
        window = _ours(silence)
        if window is not None:
            existing[window] = silence["id"]
    result = SyncResult([], [], [])
    keep = set()
    for w in wanted(inventory, now, horizon_s):
        key = Window(w.mission, round(max(w.start, now)), round(w.end))
        # A silence that began earlier was stored with its own start: match on the end.
        match = next((k for k in existing if k.mission == key.mission and k.end == key.end
                      and (k.start == key.start or k.start <= now)), None)
        if match is not None:
            keep.add(match)
            result.kept.append(w)
            continue
        call(base_url, "/silences", "POST", {
            "matchers": [{"name": "mission", "value": w.mission, "isRegex": False,
                          "isEqual": True}],
            "startsAt": iso(max(w.start, now)), "endsAt": iso(w.end),
            "createdBy": CREATED_BY,
            "comment": f"{MARK} planned maintenance of {w.mission} from the inventory"
                       + (f": {w.note}" if w.note else ""),
        })
        result.created.append(w)
    for window, silence_id in existing.items():
        if window not in keep:
            call(base_url, f"/silence/{silence_id}", "DELETE")
            result.expired.append(silence_id)
    return result
