"""`unhindered-collector dashboards push` against a recorded Grafana HTTP API contract.

Grafana cannot be installed here, so a small aiohttp server on loopback replays recorded
request/response pairs (tests/contracts/grafana/*.json, modelled on Grafana 11's
documented folder, search and dashboard APIs and its error bodies) and fails on any request
that is not exactly the next one recorded: method, path, query, bearer token and JSON
body. What it cannot show is whether a real Grafana accepts the dashboards' content: see
docs/dashboards.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest
from aiohttp import web

from collector import cli
from tests.support.grafana_queries import DASHBOARDS

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts" / "grafana"
TOKEN = "glsa_recorded0000000000000000000000_0a1b2c3d"


def _expand(value, dashboards: dict[str, dict]):
    """{"$dashboard": name, ...overrides} becomes that dashboard's JSON with the overrides."""
    if isinstance(value, dict):
        if "$dashboard" in value:
            overrides = {k: v for k, v in value.items() if k != "$dashboard"}
            return {**dashboards[value["$dashboard"]], **overrides}
        return {k: _expand(v, dashboards) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, dashboards) for v in value]
    return value


def _differences(sent, recorded, where: str = "") -> list[str]:
    """Where two JSON values differ, each side shortened: dashboards are long."""
    if isinstance(sent, dict) and isinstance(recorded, dict):
        return [d for key in sorted(set(sent) | set(recorded), key=str)
                for d in _differences(sent.get(key), recorded.get(key), f"{where}.{key}")]
    if sent == recorded:
        return []
    return [f"{where or 'body'}: sent {json.dumps(sent)[:200]}, recorded "
            f"{json.dumps(recorded)[:200]}"]


class RecordedGrafana:
    """Answers each request with the next recorded response if the request is the next
    recorded one; otherwise notes the difference and answers 500."""

    def __init__(self, contract: str) -> None:
        dashboards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
        recorded = json.loads((CONTRACTS / f"{contract}.json").read_text())
        self.exchanges = _expand(recorded["exchanges"], dashboards)
        self.position = 0
        self.mismatches: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = {"method": request.method, "path": request.path,
                "query": [list(pair) for pair in request.query.items()],
                "json": json.loads(body) if body else None,
                "authorization": request.headers.get("Authorization")}
        if self.position >= len(self.exchanges):
            self.mismatches.append(f"unexpected request after the recording: {seen}")
            return web.json_response({"message": "not in the recording"}, status=500)
        exchange = self.exchanges[self.position]
        self.position += 1
        expected = {"method": exchange["request"]["method"],
                    "path": exchange["request"]["path"],
                    "query": exchange["request"].get("query", []),
                    "json": exchange["request"].get("json"),
                    "authorization": f"Bearer {TOKEN}"}
        if seen != expected:
            self.mismatches.append(f"request {self.position} {request.method} {request.path}"
                                   f": {'; '.join(_differences(seen, expected))}")
            return web.json_response({"message": "request differs from the recording"},
                                     status=500)
        response = exchange["response"]
        return web.json_response(response["json"], status=response["status"])

    def assert_replayed_exactly(self) -> None:
        assert not self.mismatches, "\n".join(self.mismatches)
        assert self.position == len(self.exchanges), (
            f"only {self.position} of {len(self.exchanges)} recorded requests were made")


async def _push(contract: str, tmp_path: Path, capsys, *extra: str
                ) -> tuple[int, str, str, RecordedGrafana]:
    grafana = RecordedGrafana(contract)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", grafana.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    token_file = tmp_path / "grafana.token"
    token_file.write_text(TOKEN + "\n")
    try:
        code = await asyncio.to_thread(cli.main, [
            "dashboards", "push", "--url", f"http://127.0.0.1:{port}",
            "--token-file", str(token_file), *extra])
    finally:
        await runner.cleanup()
    out, err = capsys.readouterr()
    return code, out, err, grafana


async def test_first_push_creates_the_folder_and_uploads_every_dashboard(tmp_path, capsys):
    code, out, err, grafana = await _push("first_push", tmp_path, capsys)
    grafana.assert_replayed_exactly()
    assert code == 0, err
    assert out.splitlines() == [
        "folder Unhindered: created",
        "created    Unhindered — Mission (unhindered-mission)  "
        "/d/unhindered-mission/unhindered-mission",
        "created    Unhindered — Overview (unhindered-overview)  "
        "/d/unhindered-overview/unhindered-overview",
        "created    Unhindered — Uptime and SLO (unhindered-uptime)  "
        "/d/unhindered-uptime/unhindered-uptime-and-slo",
        "3 of 3 dashboards changed",
    ]


async def test_second_push_uploads_only_what_differs_or_sits_elsewhere(tmp_path, capsys):
    code, out, err, grafana = await _push("second_push", tmp_path, capsys)
    grafana.assert_replayed_exactly()
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:4]] == [
        "unchanged", "updated", "moved"]
    assert out.splitlines()[0] == "folder Unhindered: found"
    assert out.splitlines()[-1] == "2 of 3 dashboards changed"


@pytest.mark.parametrize(("contract", "says"), [
    ("bad_token", "refused the token (401 Unauthorized)"),
    ("viewer_token", "refused (403 Forbidden: You'll need additional permissions to perform "
                     "this action. Permissions needed: folders:create): the token's service "
                     "account needs the Editor role"),
    ("wrong_path", "answered 404 Not Found (Not found): is --url Grafana's base URL, with "
                   "its sub-path"),
])
async def test_refusals_are_explained(contract, says, tmp_path, capsys):
    code, out, err, grafana = await _push(contract, tmp_path, capsys)
    grafana.assert_replayed_exactly()
    assert code == 1
    assert says in err
    assert TOKEN not in err + out


async def test_nothing_listening_is_explained(tmp_path, capsys):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    code = await asyncio.to_thread(cli.main, [
        "dashboards", "push", "--url", f"http://127.0.0.1:{port}/", "--token-file",
        str(token_file)])
    _out, err = capsys.readouterr()
    assert code == 1
    assert f"cannot connect to Grafana at http://127.0.0.1:{port}/: connection refused" in err


@pytest.mark.parametrize(("token", "says"), [
    (None, "cannot read the token file"), ("\n", "is empty")])
def test_a_missing_or_empty_token_file_is_refused_before_any_request(token, says, tmp_path,
                                                                      capsys):
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token)
    code = cli.main(["dashboards", "push", "--url", "http://127.0.0.1:1/", "--token-file",
                     str(token_file)])
    assert code == 1
    assert says in capsys.readouterr().err


def test_without_grafana_client_it_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "grafana_client", None)  # import now fails
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    code = cli.main(["dashboards", "push", "--url", "http://127.0.0.1:1/", "--token-file",
                     str(token_file)])
    assert code == 1
    assert "pip install 'unhindered[grafana]'" in capsys.readouterr().err
