"""`unhindered_mission_info`: what the inventory says about each mission, as labels of a
series that is always 1, so that dashboards can join it onto the state series (the
Overview's map places missions by these coordinates).

The inventory does not change while the collector runs: `Metrics` renders the text once.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from collector.inventory.sites import Inventory

NAME = "unhindered_mission_info"
LABELS = ("mission", "name", "kind", "duty_station", "city", "latitude", "longitude")

class _InventoryCollector:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def describe(self) -> list:
        return []

    def collect(self):
        family = GaugeMetricFamily(
            NAME, "What the inventory says about a mission (name, kind, place, WGS 84 "
                  "coordinates in degrees); always 1.", labels=LABELS)
        for m in self.inventory.missions:
            family.add_metric([m.code, m.name, m.kind, m.duty_station, m.city,
                               repr(m.coordinates.lat), repr(m.coordinates.lon)], 1)
        yield family


def mission_info_exposition(inventory: Inventory | None) -> str:
    """The family as Prometheus text; empty without an inventory."""
    if inventory is None:
        return ""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_InventoryCollector(inventory))
    return generate_latest(registry).decode()
