"""Every panel query of every dashboard returns data from a real Prometheus scraping a
real collector fed by lab probes.

Two missions measure one lab target: KEN is healthy; FRA also has a `documents` check on
a closed port, so it is down, its outage annotations have something to mark and the
fleet-wide target table has a target down for one mission of two. The dashboards' JSON
is read as Grafana reads it, variables resolved through Prometheus's series API, and
each query is sent as the panel sends it (instant or range). Only the SNMP router
panels may be empty: no router is polled in this lab (docs/dashboards.md).
"""

from __future__ import annotations

import json
import math
import time
from urllib.parse import urlencode

import pytest

from collector.inventory.sites import default_inventory
from tests.support import grafana_queries as gq
from tests.support import require_program, wait_for
from tests.support.promstack import Place, prometheus
from tests.support.spine import COLLECTOR_PORT, Collector, Probe

pytestmark = [pytest.mark.netlab, pytest.mark.slow]


def _checks(target, *, refused_documents: bool) -> list[dict]:
    common = {"target": target.ipv4, "interval_s": 2, "timeout_s": 1}
    checks = [
        {"id": "internet-icmp", "kind": "icmp", "count": 3, "packet_interval_s": 0.1,
         **common},
        {"id": "internet-tcp", "kind": "tcp", "port": 80, **common},
    ]
    if refused_documents:  # nothing listens on 81: refused, so down
        checks.append({"id": "documents-tcp", "kind": "tcp", "port": 81,
                       "group": "documents", **common})
    return checks


def _has_data(answer: dict) -> bool:
    """At least one finite sample: an empty result or only NaN is no data."""
    data = answer["data"]
    if data["resultType"] == "scalar":
        samples = [data["result"]]
    elif data["resultType"] == "matrix":
        samples = [v for series in data["result"] for v in series["values"]]
    else:
        samples = [series["value"] for series in data["result"]]
    return any(math.isfinite(float(v)) for _t, v in samples)


def _value_by(answer: dict, label: str) -> dict[str, float]:
    return {s["metric"][label]: float(s["value"][1]) for s in answer["data"]["result"]}


def test_every_panel_query_returns_data(lab, tmp_path):
    require_program("prometheus", "prometheus")
    target = lab.add_target(delay_s=0.010)
    lab.start_responders()
    collector = Collector(lab, tmp_path)
    collector.start()
    missions = {code: lab.add_mission(code) for code in ("FRA", "KEN")}
    probes = [Probe(lab, missions["FRA"], tmp_path, collector,
                    _checks(target, refused_documents=True)),
              Probe(lab, missions["KEN"], tmp_path, collector,
                    _checks(target, refused_documents=False))]
    for probe in probes:
        probe.start()
    place = Place.in_lab(lab, lab.centre.name)
    with prometheus([f"{lab.centre.ipv4}:{COLLECTOR_PORT}"], place=place) as prom:
        start = time.time()
        prom.wait_for_targets_up()

        def fetch(path: str, params: dict[str, str]) -> tuple[int, dict]:
            status, body = place.fetch(f"{prom.url}{path}?{urlencode(params)}")
            return status, json.loads(body)

        def ready() -> bool:
            down = prom.query('unhindered_check_state{mission="FRA",check="documents-tcp",'
                              'state="down"} == 1')
            rtt = prom.query("count(unhindered_check_rtt_median_seconds)")
            up = prom.query('unhindered_mission_access_state{mission="KEN",group="*",'
                            'state="up"} == 1')
            return bool(down and up and rtt and float(rtt[0]["value"][1]) == 2)

        wait_for(ready, 60, "FRA down, KEN up and both RTTs in Prometheus", interval=1)
        time.sleep(6)  # a few more scrapes: rates over $__rate_interval need two samples
        end = time.time()
        window = gq.Window(start, end)

        def series(match: str) -> list[dict]:
            status, answer = fetch("/api/v1/series", {"match[]": match, "start": str(start),
                                                      "end": str(end)})
            assert status == 200, answer
            return answer["data"]

        empty, errors, sent = [], [], 0
        annotations: dict[str, bool] = {}
        for name, dashboard in gq.load().items():
            queries = gq.queries(name, dashboard)
            for choice in gq.variable_choices(dashboard, series, window.builtins()):
                for q in queries:
                    expr = choice.expr(q)
                    if expr is None:
                        continue
                    params = ({"query": expr, "time": str(end)} if q.instant else
                              {"query": expr, "start": str(start), "end": str(end),
                               "step": str(window.interval_s)})
                    status, answer = fetch("/api/v1/query" if q.instant
                                           else "/api/v1/query_range", params)
                    sent += 1
                    shown = {k: v for k, v in choice.values.items() if not k.startswith("__")}
                    if status != 200:
                        errors.append(f"{name} {q.where} {shown}: {answer.get('error')}")
                    elif q.annotation:
                        key = f"{name} {q.where}"
                        annotations[key] = annotations.get(key, False) or _has_data(answer)
                    elif not _has_data(answer) and not q.snmp_only():
                        empty.append(f"{name} {q.where} {shown}: {expr}")

        # The picture is the lab's: FRA down (worst first), KEN up; FRA on the map at its
        # inventory coordinates; the target down for one mission of the two measuring it;
        # KEN's uptime high, FRA's low.
        overview = {q.where: q for q in gq.queries("overview", gq.load()["overview"])}
        status, worst = fetch("/api/v1/query", {
            "query": overview["'Missions, worst first' A"].expr, "time": str(end)})
        assert _value_by(worst, "mission") == {"FRA": 3.0, "KEN": 0.0}
        status, located = fetch("/api/v1/query", {
            "query": overview["'Missions by access state' A"].expr, "time": str(end)})
        fra = next(s["metric"] for s in located["data"]["result"]
                   if s["metric"]["mission"] == "FRA")
        coordinates = default_inventory().mission("FRA").coordinates
        assert (float(fra["latitude"]), float(fra["longitude"])) == (
            coordinates.lat, coordinates.lon)
        status, share = fetch("/api/v1/query", {
            "query": overview["'Targets across missions' C"].expr, "time": str(end)})
        assert _value_by(share, "target") == {target.ipv4: 0.5}
        uptime = {q.where: q for q in gq.queries("uptime", gq.load()["uptime"])}
        status, uptimes = fetch("/api/v1/query", {"query": gq.substitute(
            uptime["'Uptime per mission, worst first' A"].expr, {"mission": ".+"}),
            "time": str(end)})
        uptimes = _value_by(uptimes, "mission")
        assert uptimes["KEN"] > 0.9 and uptimes["FRA"] < 0.5, uptimes

    for probe in probes:
        probe.stop()
    print(f"{sent} queries sent over a {end - start:.0f} s window")
    assert not errors, "queries Prometheus refused:\n" + "\n".join(errors)
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert annotations and all(annotations.values()), annotations
    assert sent >= 60
