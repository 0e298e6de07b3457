"""unhindered_mission_info carries what the inventory says about each mission."""

from prometheus_client.parser import text_string_to_metric_families

from collector.inventory.sites import Inventory, default_inventory
from collector.metrics.mission_info import mission_info_exposition


def _samples(text: str) -> dict[str, dict[str, str]]:
    (family,) = text_string_to_metric_families(text)
    assert family.name == "unhindered_mission_info" and family.type == "gauge"
    assert {s.value for s in family.samples} == {1.0}
    return {s.labels["mission"]: s.labels for s in family.samples}


def test_every_inventory_mission_is_exported_with_its_coordinates():
    inventory = default_inventory()
    samples = _samples(mission_info_exposition(inventory))
    assert set(samples) == {m.code for m in inventory.missions}
    fra = inventory.mission("FRA")
    assert samples["FRA"] == {
        "mission": "FRA", "name": fra.name, "kind": "member_state",
        "duty_station": fra.duty_station, "city": fra.city,
        "latitude": repr(fra.coordinates.lat), "longitude": repr(fra.coordinates.lon)}
    assert float(samples["FRA"]["latitude"]) == fra.coordinates.lat


def test_label_values_are_escaped_and_each_inventory_renders_its_own():
    inventory = Inventory.model_validate({"missions": [{
        "code": "NGO-1", "name": 'The "Quoted" \\ Trust', "kind": "ngo",
        "duty_station": "Geneva", "city": "Genève",
        "coordinates": {"lat": -33.5, "lon": 151.25}}]})
    samples = _samples(mission_info_exposition(inventory))
    assert samples["NGO-1"]["name"] == 'The "Quoted" \\ Trust'
    assert samples["NGO-1"]["city"] == "Genève"
    assert (samples["NGO-1"]["latitude"], samples["NGO-1"]["longitude"]) == ("-33.5", "151.25")
    assert "FRA" in _samples(mission_info_exposition(default_inventory()))
    assert mission_info_exposition(None) == ""
