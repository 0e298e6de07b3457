"""The centre's control measurements (collector/control/) in a real collector, on both
backends: a probe's failed round makes the centre measure the same target at once with
the probes' own check code, against a real HTTP server on loopback; the result is stored
and read back through the API beside the probe's round, and shown in /metrics."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.config import CollectorConfig
from collector.control import store as control_store
from collector.control.plan import ControlTarget, control_key
from collector.control.runner import icmp_allowed, measure
from collector.control.settings import ControlSettings
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from tests.support import require_program
from tests.support.storage import registered_since
from unhindered.checks import HttpCheck, IcmpCheck

PAGE = b"<html><head><title>Documents</title></head><body>the real site</body></html>"


@pytest.fixture
async def site():
    """The target: a small site on loopback."""
    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/docs", page)
    app.router.add_get("/slow", slow)
    async with TestServer(app, host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}/docs"


def http_round(seq: int, mission: str, probe: str, url: str, ok: bool, at: float) -> dict:
    failed = {"reason": "http_status", "detail": "status 403 (expected 200-399)"}
    return {"seq": seq, "probe_id": probe, "mission": mission, "check_id": "docs-http",
            "kind": "http", "target": url, "group": "documents",
            "started_at": datetime.fromtimestamp(at, UTC).isoformat(), "duration_s": 0.01,
            "ok": ok, **({} if ok else failed), "interval_s": 86_400,
            "figures": {"status_code": 200 if ok else 403, "body_bytes": 120}}


async def test_a_failed_round_is_measured_from_the_centre_at_once(any_store, site):
    store = any_store
    creds = {p: store.add_probe(p, m) for p, m in [("fra-1", "FRA"), ("ken-1", "KEN")]}
    registered_since(store, time.time() - 3_600)
    reader = store.add_reader("tests")
    # A long interval: only the failure can explain a control within the test.
    config = CollectorConfig(control=ControlSettings(
        enabled=True, interval_s=86_400, probe_checks=True, private_targets=True,
        failure_debounce_s=3_600))
    async with TestClient(TestServer(create_app(config, store))) as client:
        collector = client.server.app[COLLECTOR]

        async def post(probe: str, mission: str, ok: bool, seq: int) -> None:
            body = {"protocol": 1, "probe_id": probe, "mission": mission,
                    "outbox_id": "a" * 32,
                    "measurements": [http_round(seq, mission, probe, site, ok, time.time())]}
            response = await client.post("/api/v1/results", json=body,
                                         headers={"Authorization": f"Bearer {creds[probe]}"})
            assert response.status == 200, await response.text()

        async def api(**params) -> dict:
            now = time.time()
            response = await client.get(
                "/api/v1/control", headers={"Authorization": f"Bearer {reader}"},
                params={"from": str(int(now - 3_600)), "to": str(int(now + 60)), **params})
            assert response.status == 200, await response.text()
            return await response.json()

        await post("ken-1", "KEN", True, 1)
        await post("fra-1", "FRA", False, 1)  # FRA sees a block page (403) ...

        async def measured() -> bool:
            return bool((await api(mission="FRA", check="docs-http"))["items"])

        deadline = time.monotonic() + 15
        while not await measured():
            assert time.monotonic() < deadline, "no control measurement within 15 s"
            await asyncio.sleep(0.2)
        body = await api(mission="FRA", check="docs-http")
        [control] = body["items"]
        # ... the centre sees the real site, measured with the probes' own http code.
        assert control["trigger"] == "failure" and control["ok"] is True
        assert control["kind"] == "http" and control["target"] == site
        assert control["figures"]["status_code"] == 200
        assert control["figures"]["body_bytes"] == len(PAGE)
        assert body["probe"]["last_ok"] is False and body["probe"]["last_reason"] == "http_status"
        assert body["key"] == control["key"] and body["not_measured"] is None
        # One control for the target both missions check; by target, the same.
        assert collector.control.key_for("KEN", "docs-http") == body["key"]
        assert (await api(target=site))["items"] == body["items"]
        # A second failure within the debounce measures nothing more.
        await post("fra-1", "FRA", False, 2)
        await asyncio.sleep(1.5)
        assert len((await api(target=site))["items"]) == 1
        metrics = await (await client.get("/metrics")).text()
        assert f'unhindered_control_success{{kind="http",target="{site}"}} 1.0' in metrics
        assert 'unhindered_control_measurements_total{trigger="failure"} 1.0' in metrics
        control_lines = "".join(line + "\n" for line in metrics.splitlines()
                                if "unhindered_control_" in line)
        lint = await asyncio.create_subprocess_exec(
            require_program("promtool", "prometheus"), "check", "metrics",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        said, _ = await lint.communicate(control_lines.encode())
        assert lint.returncode == 0 and not said.strip(), said
        # A check the centre does not measure says why.
        body = await api(mission="FRA", check="nothing-here")
        assert body["items"] == [] and body["probe"] is None and body["not_measured"]
        status = (await client.get("/api/v1/control", params={"mission": "FRA"},
                                   headers={"Authorization": f"Bearer {reader}"})).status
        assert status == 400
    # Pruned like raw results.
    assert control_store.prune(store, time.time() + 1) == 1


async def test_control_off_by_default_says_so(any_store):
    reader = any_store.add_reader("tests")
    async with TestClient(TestServer(create_app(CollectorConfig(), any_store))) as client:
        assert client.server.app[COLLECTOR].control is None
        now = time.time()
        response = await client.get(
            "/api/v1/control", headers={"Authorization": f"Bearer {reader}"},
            params={"mission": "FRA", "check": "docs", "from": str(int(now - 60)),
                    "to": str(int(now))})
        body = await response.json()
        assert response.status == 200 and "control.enabled" in body["not_measured"]


async def test_icmp_from_the_centre_and_the_control_timeout(site):
    if icmp_allowed():
        ping = IcmpCheck(id="control", kind="icmp", target="127.0.0.1", count=2,
                         packet_interval_s=0.05, timeout_s=1)
        row = await measure(ControlTarget(control_key(ping), "icmp", ping, "127.0.0.1"),
                            "periodic", 5)
        assert row.ok is True and json.loads(row.figures)["received"] == 2
    # The control's own bound stops a measurement its check would let run longer.
    slow = HttpCheck(id="control", kind="http", target=site.replace("/docs", "/slow"),
                     timeout_s=30)
    row = await measure(ControlTarget(control_key(slow), "http", slow, slow.target),
                        "periodic", 0.3)
    assert (row.ok, row.reason) == (False, "timeout") and "control.timeout_s" in row.detail
    assert row.duration_s < 2
