"""What every handler of the collector's web app shares: the Collector it serves (under
one app key), refusals with a reason the caller can act on, and bearer tokens. Imports
nothing else of the web app, so the app, ingest, the API and the status page all import
it and never each other."""

from __future__ import annotations

from aiohttp import web

from collector.core import Collector

COLLECTOR = web.AppKey("collector", Collector)


def collector_of(request: web.Request) -> Collector:
    return request.app[COLLECTOR]


class Refusal(Exception):
    """A request we refuse: the status and a reason the caller can act on."""

    def __init__(self, status: int, reason: str, details: list | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.details = status, reason, details


def error_response(status: int, reason: str, details: list | None = None) -> web.Response:
    body: dict = {"error": reason}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refusal(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    return token.strip()
