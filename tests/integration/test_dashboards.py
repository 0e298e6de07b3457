"""The committed dashboards: generated from the code, well formed, and every query one a
real Prometheus accepts (Prometheus 2.42 has no /api/v1/parse_query: /api/v1/query answers
400 with the parse error instead)."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

from dashboards import generate
from tests.support import grafana_queries as gq
from tests.support import require_program
from tests.support.promstack import prometheus

UIDS = {"overview": "unhindered-overview", "mission": "unhindered-mission",
        "uptime": "unhindered-uptime"}


def test_committed_json_is_what_the_code_generates(tmp_path):
    built = generate.dashboards()
    assert sorted(built) == sorted(f"{n}.json" for n in UIDS)
    for name, dashboard in built.items():
        committed = (gq.DASHBOARDS / name).read_text()
        assert committed == generate.render(dashboard), (
            f"dashboards/{name} is stale: run python -m dashboards.generate")
    assert generate.main(["--check"]) == 0
    # --check notices a difference, and writing fixes it.
    (tmp_path / "mission.json").write_text("{}\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0


def test_dashboards_are_well_formed():
    dashboards = gq.load()
    assert {n: d["uid"] for n, d in dashboards.items()} == UIDS
    for name, d in dashboards.items():
        variables = [v["name"] for v in d["templating"]["list"]]
        assert variables[0] == "datasource", name
        for panel in gq.panels(d):
            if panel["type"] == "row":
                continue
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            for t in panel["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            # Every variable a query uses exists on its dashboard.
            for t in panel["targets"]:
                used = {m for m in re.findall(r"\$(\w+)", t["expr"])
                        if not m.startswith("__")}
                assert used <= set(variables), (name, panel["title"], used)
    mission = dashboards["mission"]
    assert [v["name"] for v in mission["templating"]["list"]] == [
        "datasource", "mission", "check"]
    types = {p["type"] for p in gq.panels(mission)}
    assert {"state-timeline", "timeseries", "stat"} <= types
    assert "geomap" in {p["type"] for p in gq.panels(dashboards["overview"])}
    # The SNMP-only queries are exactly the router panels', which say so.
    snmp = {q.where for q in gq.queries("mission", mission) if q.snmp_only()}
    router = {f"{p['title']!r} {t['refId']}" for p in gq.panels(mission)
              for t in p.get("targets", []) if "(SNMP)" in p["title"]}
    assert snmp == router and len(router) == 5
    assert not [q for n, d in dashboards.items() if n != "mission"
                for q in gq.queries(n, d) if q.snmp_only()]


def _placeholder_choices(dashboard: dict) -> list[gq.Choice]:
    """Variables set to plausible values; only whether Prometheus parses matters here."""
    now = time.time()
    builtins = gq.Window(now - 3600, now).builtins()
    return gq.variable_choices(dashboard, lambda _match: [
        {"mission": "FRA", "check": "internet-icmp"}], builtins)


def test_every_panel_and_annotation_query_parses_in_prometheus():
    require_program("prometheus", "prometheus")
    dashboards = gq.load()
    checked = 0
    with prometheus() as prom:
        # What a bad query looks like, so that the check below can fail.
        for bad in ("rate(up[5m]", 'up{mission="FRA"'):
            status, body = prom.place.fetch(prom.url + "/api/v1/query?" + urlencode(
                {"query": bad}))
            assert status == 400 and b"parse error" in body
        now = time.time()
        for name, dashboard in dashboards.items():
            for choice in _placeholder_choices(dashboard):
                for q in gq.queries(name, dashboard):
                    expr = choice.expr(q)
                    if expr is None:
                        continue
                    assert "$" not in expr, f"{name} {q.where}: unsubstituted {expr}"
                    params = ({"query": expr, "time": str(now)} if q.instant else
                              {"query": expr, "start": str(now - 600), "end": str(now),
                               "step": "15"})
                    path = "/api/v1/query" if q.instant else "/api/v1/query_range"
                    url = prom.url + path + "?" + urlencode(params)
                    status, body = prom.place.fetch(url)
                    assert status == 200, f"{name} {q.where}: {json.loads(body)['error']}"
                    checked += 1
    assert checked >= 35


def test_provisioning_points_at_the_dashboards_and_a_prometheus():
    import yaml

    from collector.grafana_push import DEFAULT_FOLDER, folder_uid_for

    provisioning = gq.ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load(
        (provisioning / "datasources" / "unhindered.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    # The dashboards' datasource variable lists data sources of that type.
    for name, d in gq.load().items():
        (variable,) = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
        assert (variable["type"], variable["query"]) == ("datasource", source["type"]), name
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "unhindered.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    # Provisioned or pushed, the dashboards land in the same folder.
    assert (provider["folder"], provider["folderUid"]) == (
        DEFAULT_FOLDER, folder_uid_for(DEFAULT_FOLDER))
