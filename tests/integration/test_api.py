"""The read-only REST API (collector/web/api/), served on loopback, against real stores on
both backends: results go in through POST /api/v1/results as a probe sends them, and come
out of every endpoint."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from collector.config import CollectorConfig
from collector.store.rollups import Rollups
from collector.web.api.params import decode_cursor, encode_cursor, parse_time
from collector.web.api.routes import ENDPOINTS
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from tests.support.storage import registered_since
from tests.unit.test_measurement import icmp

# An hour boundary a day ago: the hour of results below is over, so its rollup exists,
# and every result is in the past, as ingest requires.
BASE = math.floor(time.time() / 3600) * 3600 - 86_400
# The checks' interval: long enough that no check turns unknown while a test runs, which
# would add an interval at a moment the test does not choose.
INTERVAL_S = 86_400
# internet-icmp of FRA: a round a minute, rounds 6 to 10 failed.
OUTAGE = range(6, 11)
# Decided by the third failure and the second good round, each placed between the rounds
# that show it (docs/states.md): the last good round answered until 2.08 s after it began
# (duration 2.1 s less its RTT), the first failure at 6 min; the last failure at 10 min,
# the first good round at 11.
DOWN_AFTER, DOWN_BEFORE = BASE + 5 * 60 + 2.08, BASE + 6 * 60
UP_AFTER, UP_BEFORE = BASE + 10 * 60, BASE + 11 * 60
DOWN_AT, UP_AT = (DOWN_AFTER + DOWN_BEFORE) / 2, (UP_AFTER + UP_BEFORE) / 2


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def batch(probe: str, mission: str, rounds: list[tuple[str, float, bool]], first_seq: int,
          group_of: dict[str, str] | None = None, backlog: int | None = 0) -> dict:
    """A probe's batch: (check, time, ok) per round, a single echo request each."""
    measurements = []
    for i, (check, t, good) in enumerate(rounds):
        figures = ({"sent": 1, "received": 1, "loss_ratio": 0, "rtt_min_s": 0.02,
                    "rtt_median_s": 0.02, "rtt_mean_s": 0.02, "rtt_max_s": 0.02,
                    "samples_s": [0.02]} if good else {"sent": 1, "received": 0, "loss_ratio": 1})
        measurements.append(icmp(
            seq=first_seq + i, probe_id=probe, mission=mission, check_id=check,
            group=(group_of or {}).get(check, "internet"), started_at=iso(t), ok=good,
            reason=None if good else "timeout", figures=figures, interval_s=INTERVAL_S))
    return {"protocol": 1, "probe_id": probe, "mission": mission, "outbox_id": "a" * 32,
            "backlog": backlog, "measurements": measurements}


GROUPS = {"docs-icmp": "documents", "local-gateway": "local"}


@pytest.fixture
async def collector(any_store):
    """A collector with registered probes and read tokens, and no results yet."""
    store = any_store
    creds = {p: store.add_probe(p, m) for p, m in
             [("fra-1", "FRA"), ("fra-2", "FRA"), ("ken-1", "KEN"), ("lab-1", "LAB")]}
    store.enroll_probe("bra-1", "BRA", 3600)  # registered, never enrolled
    store.add_probe("old-1", "FRA")
    store.revoke_probe("old-1")
    registered_since(store, BASE - 3600)  # before the results below, which are a day old
    read_token = store.add_reader("tests")
    revoked_reader = store.add_reader("gone")
    store.revoke_reader("gone")
    async with TestClient(TestServer(create_app(CollectorConfig(), store))) as client:
        yield Fleet(client, read_token, creds, revoked_reader)


@pytest.fixture
async def fleet(collector):
    """The collector with results from four probes of three missions, and their rollups."""
    async def post(probe: str, body: dict) -> None:
        response = await collector.client.post(
            "/api/v1/results", json=body,
            headers={"Authorization": f"Bearer {collector.creds[probe]}"})
        assert response.status == 200, await response.text()

    internet = [("internet-icmp", BASE + 60 * i, i not in OUTAGE) for i in range(20)]
    docs = [("docs-icmp", BASE + 60 * i, True) for i in range(20)]
    # Two probes measure local-gateway at the same instants: equal times in the results.
    local = [("local-gateway", BASE + 60 * i, True) for i in range(5)]
    await post("fra-1", batch("fra-1", "FRA", internet[:10], 1, backlog=30))
    await post("fra-1", batch("fra-1", "FRA", internet[10:] + docs, 11, GROUPS, backlog=0))
    await post("fra-1", batch("fra-1", "FRA", local, 100, GROUPS))
    await post("fra-2", batch("fra-2", "FRA", local, 1, GROUPS))
    await post("ken-1", batch("ken-1", "KEN", [("internet-icmp", BASE, True)], 1))
    await post("lab-1", batch("lab-1", "LAB", [("internet-icmp", BASE, False)], 1))
    # The rollups as the collector's background task makes them, on its database thread.
    app = collector.client.server.app
    await asyncio.get_running_loop().run_in_executor(
        app[COLLECTOR].db_thread, Rollups(app[COLLECTOR].store).run, time.time())
    return collector


class Fleet:
    def __init__(self, client: TestClient, read_token: str, creds: dict[str, str],
                 revoked_reader: str) -> None:
        self.client, self.read_token, self.creds = client, read_token, creds
        self.revoked_reader = revoked_reader

    async def get(self, path: str, token: str | None = "read", **params) -> tuple[int, dict]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.read_token if token == 'read' else token}"
        response = await self.client.get(path, params=params, headers=headers)
        assert response.content_type == "application/json"
        return response.status, await response.json()

    async def ok(self, path: str, **params) -> dict:
        status, body = await self.get(path, **params)
        assert status == 200, body
        return body

    async def walk(self, path: str, **params) -> list[list]:
        """Every page of a listing, following next_cursor."""
        pages = []
        cursor = None
        while True:
            body = await self.ok(path, **params, **({"cursor": cursor} if cursor else {}))
            pages.append(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return pages


def t(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


HOUR = {"from": iso(BASE), "to": iso(BASE + 3600)}


async def test_missions_list_access_overall_and_per_group(fleet):
    missions = {m["code"]: m for m in (await fleet.ok("/api/v1/missions"))["items"]}
    # The inventory's 195 missions, plus LAB, which is not in it but has reported.
    assert len(missions) == 196
    fra = missions["FRA"]
    assert (fra["name"], fra["in_inventory"], fra["access"]) == ("France", True, "up")
    assert t(fra["since"]) == UP_AT
    # local-gateway proves nothing about access, so "local" is no group of it.
    assert [(g["group"], g["state"], t(g["since"])) for g in fra["groups"]] == [
        ("documents", "up", BASE), ("internet", "up", UP_AT)]
    assert missions["LAB"] == {"code": "LAB", "name": None, "in_inventory": False,
                               "access": "down", "since": iso(BASE),
                               "groups": [{"group": "internet", "state": "down",
                                           "since": iso(BASE)}]}
    assert (missions["BRA"]["access"], missions["BRA"]["since"]) == ("unknown", None)


async def test_one_mission_with_its_checks(fleet):
    fra = await fleet.ok("/api/v1/missions/FRA")
    checks = {c["check_id"]: c for c in fra["checks"]}
    assert sorted(checks) == ["docs-icmp", "internet-icmp", "local-gateway"]
    internet = checks["internet-icmp"]
    assert (internet["state"], t(internet["since"]), internet["kind"], internet["group"],
            internet["target"]) == ("up", UP_AT, "icmp", "internet", "198.19.0.1")
    assert (internet["rounds_total"], internet["rounds_failed"]) == (20, 5)
    assert t(internet["last_round_at"]) == BASE + 19 * 60
    assert internet["last_ok"] is True and internet["figures"]["rtt_median_s"] == 0.02
    assert checks["local-gateway"]["group"] == "local"
    assert checks["local-gateway"]["rounds_total"] == 10

    status, body = await fleet.get("/api/v1/missions/NOPE")
    assert status == 404 and "mission 'NOPE' is not known" in body["error"]


async def test_states_filtered_and_paged(fleet):
    pages = await fleet.walk("/api/v1/states", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    keys = [(s["mission"], s["check_id"]) for p in pages for s in p]
    assert keys == [("FRA", "docs-icmp"), ("FRA", "internet-icmp"), ("FRA", "local-gateway"),
                    ("KEN", "internet-icmp"), ("LAB", "internet-icmp")]
    ken = await fleet.ok("/api/v1/states", mission="KEN")
    assert [(s["check_id"], s["state"], t(s["since"]), s["probe_id"]) for s in ken["items"]] == [
        ("internet-icmp", "up", BASE, "ken-1")]
    assert ken["next_cursor"] is None


async def test_intervals_of_a_check_and_of_access(fleet):
    outage = [(BASE, DOWN_AT, "up"), (DOWN_AT, UP_AT, "down"), (UP_AT, None, "up")]

    def spans(body):
        return [(t(i["started_at"]), t(i["ended_at"]), i["state"]) for i in body["items"]]

    check = await fleet.ok("/api/v1/intervals", mission="FRA", check="internet-icmp", **HOUR)
    assert spans(check) == outage
    assert check["items"][1]["cause"] == "3 of the last 5 rounds failed (timeout)"
    # Where the evidence places each change: its bounds (the first period began with the
    # first round, after no data: none).
    assert [(t(i["started_after"]), t(i["started_before"])) for i in check["items"]] == [
        (None, None), (DOWN_AFTER, DOWN_BEFORE), (UP_AFTER, UP_BEFORE)]
    overall = await fleet.ok("/api/v1/intervals", mission="FRA", group="*", **HOUR)
    assert (overall["group"], overall["check"], spans(overall)) == ("*", None, outage)
    docs = await fleet.ok("/api/v1/intervals", mission="FRA", group="documents", **HOUR)
    assert spans(docs) == [(BASE, None, "up")]
    # Intervals overlapping [from, to): the up period ending at `from` is not one of them.
    during = await fleet.ok("/api/v1/intervals", mission="FRA", check="internet-icmp",
                            **{"from": str(DOWN_AT), "to": iso(DOWN_AT + 60)})
    assert spans(during) == [(DOWN_AT, UP_AT, "down")]
    # Times with an offset mean the same instants.
    paris = await fleet.ok("/api/v1/intervals", mission="FRA", check="internet-icmp",
                           **{"from": datetime.fromtimestamp(BASE, UTC).astimezone().isoformat(),
                              "to": str(BASE + 3600)})
    assert spans(paris) == outage
    pages = await fleet.walk("/api/v1/intervals", mission="FRA", group="*", limit=1, **HOUR)
    assert [spans({"items": p})[0] for p in pages] == outage


async def test_results_as_sent_and_paged_exactly_once(fleet):
    pages = await fleet.walk("/api/v1/results", mission="FRA", check="internet-icmp", limit=7,
                             **HOUR)
    assert [len(p) for p in pages] == [7, 7, 6]
    items = [r for p in pages for r in p]
    assert [r["seq"] for r in items] == list(range(1, 21))
    assert [t(r["started_at"]) for r in items] == [BASE + 60 * i for i in range(20)]
    assert [r["ok"] for r in items] == [i not in OUTAGE for i in range(20)]
    first = items[0]
    assert (first["kind"], first["probe_id"], first["figures"]["samples_s"],
            first["interval_s"]) == ("icmp", "fra-1", [0.02], INTERVAL_S)
    assert abs(t(first["received_at"]) - time.time()) < 60
    assert items[6]["reason"] == "timeout" and items[6]["figures"]["rtt_median_s"] is None

    # Two probes' results at the same instants: pages split between equal times, and the
    # keyset (time, id) still gives every result exactly once.
    pages = await fleet.walk("/api/v1/results", mission="FRA", check="local-gateway", limit=3,
                             **HOUR)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    items = [r for p in pages for r in p]
    assert sorted((r["probe_id"], r["seq"]) for r in items) == sorted(
        [("fra-1", s) for s in range(100, 105)] + [("fra-2", s) for s in range(1, 6)])
    times = [t(r["started_at"]) for r in items]
    assert times == sorted(times)

    # [from, to): a result at `to` is not in, one at `from` is.
    window = await fleet.ok("/api/v1/results", mission="FRA", check="internet-icmp",
                            **{"from": str(BASE + 60), "to": str(BASE + 180)})
    assert [r["seq"] for r in window["items"]] == [2, 3]


async def test_rollups_after_a_run(fleet):
    hours = await fleet.ok("/api/v1/rollups", mission="FRA", check="internet-icmp",
                           resolution="3600", **HOUR)
    [hour] = hours["items"]
    assert (t(hour["bucket_start"]), hour["rounds"], hour["rounds_ok"], hour["samples"],
            hour["sent"], hour["received"], hour["loss_ratio"], hour["rtt_median_s"]) == (
        BASE, 20, 15, 15, 20, 15, 0.25, 0.02)
    pages = await fleet.walk("/api/v1/rollups", mission="FRA", check="internet-icmp",
                             resolution="60", limit=8, **HOUR)
    minutes = [m for p in pages for m in p]
    assert [len(p) for p in pages] == [8, 8, 4]
    assert [t(m["bucket_start"]) for m in minutes] == [BASE + 60 * i for i in range(20)]
    assert [m["rounds_ok"] for m in minutes] == [0 if i in OUTAGE else 1 for i in range(20)]
    assert minutes[6]["loss_ratio"] == 1.0 and minutes[6]["rtt_median_s"] is None


async def test_probes_with_status_and_last_report(fleet):
    probes = {p["probe_id"]: p for p in (await fleet.ok("/api/v1/probes"))["items"]}
    assert {k: p["status"] for k, p in probes.items()} == {
        "fra-1": "active", "fra-2": "active", "ken-1": "active", "lab-1": "active",
        "bra-1": "enrolling", "old-1": "revoked"}
    fra = probes["fra-1"]
    assert (fra["mission"], fra["backlog"], fra["results_since_start"]) == ("FRA", 0, 45)
    assert abs(t(fra["last_report_at"]) - time.time()) < 60
    assert probes["bra-1"]["last_report_at"] is None
    assert probes["old-1"]["revoked_at"] is not None


CHECK = {"mission": "FRA", "check": "internet-icmp"}


@pytest.mark.parametrize("path, params, status, reason", [
    ("/api/v1/results", {**CHECK, "from": "yesterday", "to": "1"}, 400,
     "'from': 'yesterday' is not an RFC 3339 time"),
    ("/api/v1/results", {**CHECK, "from": "2026-11-29T10:00:00", "to": "1"}, 400,
     "'from': '2026-11-29T10:00:00' is not an RFC 3339 time with an offset"),
    ("/api/v1/results", {**CHECK, "from": "2026-11-29T10:00:00 01:00", "to": "1"}, 400,
     "URL-encode '+' as %2B"),
    ("/api/v1/results", {**CHECK, "from": "2026-13-29T10:00:00Z", "to": "1"}, 400,
     "'from': '2026-13-29T10:00:00Z' is not a valid time"),
    ("/api/v1/results", {**CHECK, "from": "999999999999", "to": "1"}, 400,
     "'from' must be between 1970 and 9999"),
    ("/api/v1/results", {**CHECK, "from": "1000", "to": "1000"}, 400,
     "'from' must be before 'to'"),
    ("/api/v1/results", {**CHECK, "from": "2000", "to": "1000"}, 400,
     "'from' must be before 'to'"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": str(8 * 86_400)}, 400,
     "'from' to 'to' spans 8 days: /api/v1/results serves at most 7 days"),
    ("/api/v1/results", {**CHECK, "from": "0"}, 400, "missing parameter 'to'"),
    ("/api/v1/results", {"mission": "FRA", "from": "0", "to": "1"}, 400,
     "missing parameter 'check'"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1", "mision": "FRA"}, 400,
     "unknown parameter 'mision'"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1", "limit": "5001"}, 400,
     "'limit' must be an integer from 1 to 5000"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1", "limit": "0"}, 400,
     "'limit' must be an integer from 1 to 5000"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1", "limit": "ten"}, 400,
     "'limit' must be an integer"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1", "cursor": "not-a-cursor"}, 400,
     "'cursor' is not a cursor this endpoint gave out"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1",
                         "cursor": encode_cursor("rollups", [1.0])}, 400,
     "'cursor' is not a cursor this endpoint gave out"),
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1",
                         "cursor": encode_cursor("results", ["x", 1])}, 400,
     "'cursor' is not a cursor"),
    ("/api/v1/states", {"cursor": encode_cursor("states", ["FRA"])}, 400,
     "'cursor' is not a cursor"),
    # A row id past 64 bits would overflow the database's integer: refused, not a 500.
    ("/api/v1/results", {**CHECK, "from": "0", "to": "1",
                         "cursor": encode_cursor("results", [1.0, 2**70])}, 400,
     "'cursor' is not a cursor"),
    ("/api/v1/results", {"mission": "fra", "check": "x", "from": "0", "to": "1"}, 400,
     "'mission': 'fra' is not a mission code"),
    ("/api/v1/intervals", {**CHECK, "group": "*", "from": "0", "to": "1"}, 400,
     "give exactly one of 'check'"),
    ("/api/v1/intervals", {"mission": "FRA", "from": "0", "to": "1"}, 400,
     "give exactly one of 'check'"),
    ("/api/v1/intervals", {**CHECK, "from": "0", "to": str(401 * 86_400)}, 400,
     "/api/v1/intervals serves at most 400 days"),
    ("/api/v1/rollups", {**CHECK, "resolution": "300", "from": "0", "to": "1"}, 400,
     "'resolution' must be 60 (minutes) or 3600 (hours), not '300'"),
    ("/api/v1/rollups", {**CHECK, "from": "0", "to": "1"}, 400,
     "missing parameter 'resolution'"),
    ("/api/v1/rollups", {**CHECK, "resolution": "60", "from": "0", "to": str(32 * 86_400)},
     400, "at resolution 60 serves at most 31 days"),
    ("/api/v1/rollups", {**CHECK, "resolution": "3600", "from": "0", "to": str(401 * 86_400)},
     400, "at resolution 3600 serves at most 400 days"),
    ("/api/v1/missions", {"x": "1"}, 400, "unknown parameter 'x': this endpoint takes no"),
    ("/api/v1/missions/XYZ", {}, 404, "mission 'XYZ' is not known"),
])
async def test_bad_input_is_refused_with_a_reason(collector, path, params, status, reason):
    got, body = await collector.get(path, **params)
    assert got == status
    assert reason in body["error"], body["error"]


async def test_ranges_at_the_limits_are_served(fleet):
    week = {"from": iso(BASE), "to": iso(BASE + 7 * 86_400)}
    assert (await fleet.ok("/api/v1/results", **CHECK, **week))["items"]
    month = {"from": iso(BASE), "to": iso(BASE + 31 * 86_400)}
    assert (await fleet.ok("/api/v1/rollups", **CHECK, resolution="60", **month))["items"]
    assert (await fleet.ok("/api/v1/results", **CHECK, limit="5000", **HOUR))["items"]


@pytest.mark.parametrize("path", [e.path.replace("{code}", "FRA") for e in ENDPOINTS])
async def test_every_endpoint_wants_a_read_token(collector, path):
    status, body = await collector.get(path, token=None)
    assert status == 401 and "missing bearer token" in body["error"]
    # A probe's credential is no read token, nor is a revoked read token.
    for token in (collector.creds["fra-1"], collector.revoked_reader, "uhr1.guessed"):
        status, body = await collector.get(path, token=token)
        assert status == 401 and "unknown or revoked read token" in body["error"]
    response = await collector.client.get(path)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_openapi_document_is_valid_public_and_covers_every_route(fleet):
    response = await fleet.client.get("/api/v1/openapi.json")  # no token
    assert response.status == 200
    document = await response.json()
    validate(document)  # OpenAPI 3.1, schemas included
    assert document["openapi"].startswith("3.1")
    served = {(r.resource.canonical, r.method.lower())
              for r in fleet.client.server.app.router.routes()
              # HEAD is aiohttp's automatic twin of some GET routes, not an operation.
              if r.resource is not None and r.resource.canonical.startswith("/api/v1/")
              and r.method != "HEAD"}
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item}
    assert served == documented
    # Every read endpoint documents its errors with the error body's schema.
    for endpoint in ENDPOINTS:
        responses = document["paths"][endpoint.path]["get"]["responses"]
        assert {"200", "400", "401"} <= set(responses)
        assert responses["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}


def test_times_and_cursors_round_trip():
    assert parse_time("from", "2026-11-29T11:00:00+01:00") == parse_time(
        "from", "2026-11-29T10:00:00Z") == parse_time("from", "1795946400")
    assert parse_time("to", "1795946400.25") == 1_795_946_400.25
    after = [1_795_946_400.123456789, 2**40]
    cursor = encode_cursor("results", after)
    assert decode_cursor("results", cursor, (float, int)) == tuple(after)


def fuzz(base_url: str, token: str, document: dict, examples: int) -> None:
    """Schemathesis against the served API: valid and invalid requests of every read
    endpoint get no 5xx, only documented statuses, and bodies matching their schemas."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {token}"}
    for endpoint in ENDPOINTS:
        operation = schema[endpoint.path]["GET"]
        names = {p.name for p in endpoint.params}
        # Random missions, checks and times find nothing; some cases name real ones, so
        # that answers with items are checked against their schemas too.
        real = {k: v for k, v in {**CHECK, **HOUR}.items() if k in names}
        strategies = [operation.as_strategy(), operation.as_strategy(
            generation_mode=schemathesis.GenerationMode.NEGATIVE)]
        if real:
            strategies.append(operation.as_strategy(query=real))
        if "code" in names:
            strategies.append(operation.as_strategy(path_parameters={"code": "FRA"}))
        for strategy in strategies:
            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case) -> None:
                response = case.call(base_url=base_url, headers=headers)
                case.validate_response(response, checks=checks, headers=headers)

            run()


async def test_schemathesis_finds_no_server_error(fleet):
    document = await (await fleet.client.get("/api/v1/openapi.json")).json()
    base_url = str(fleet.client.make_url("")).rstrip("/")
    # Schemathesis blocks while it waits for answers: off the loop that serves them.
    await asyncio.to_thread(fuzz, base_url, fleet.read_token, document, 25)
