"""The OpenAPI 3.1 document of everything under /api/v1, served at /api/v1/openapi.json
without a token: the read endpoints from the same table the routes are added from
(routes.ENDPOINTS), their schemas from the same pydantic models the handlers answer with
(models.py), and the probes' routes (collector/web/ingest.py) from the protocol's models,
so the document cannot drift from what is served. Built once, on first use (add_routes
builds it at start-up, so a model that cannot be described fails there)."""

from __future__ import annotations

import functools
import json

from aiohttp import web
from pydantic import BaseModel

from collector.web.api.models import Enrolled, EnrollRequest, ErrorBody, ProbeChecks
from collector.web.api.params import PREFIX
from collector.web.api.routes import ENDPOINTS, Endpoint
from unhindered.heartbeat import HEARTBEAT_PATH, Heartbeat
from unhindered.measurement import Ack, Batch

_ERRORS = {
    304: "the probe's check list has not changed (If-None-Match)",
    400: "a parameter is missing, unknown, malformed or out of range (the error says which)",
    401: "no bearer token, or a token that is unknown or revoked",
    403: "refused for this credential (the error says why)",
    404: "no such mission",
    413: "the body is over the collector's limit",
    422: "a field is out of range (details name each field)",
}


def _response(description: str, schema: dict | None) -> dict:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(codes: tuple[int, ...]) -> dict:
    return {str(code): _response(_ERRORS[code], {"$ref": _ref(ErrorBody)} if code != 304
                                 else None) for code in codes}


def _ref(model: type[BaseModel]) -> str:
    return f"#/components/schemas/{model.__name__}"


def _schemas(models: list[tuple[type[BaseModel], str]]) -> dict[str, dict]:
    """components.schemas: each model's JSON Schema with its nested models hoisted."""
    out: dict[str, dict] = {}
    for model, mode in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}",
                                         mode=mode)
        for name, part in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            # Two models of one name must be one schema, or one would silently replace the
            # other (e.g. a figures model read differently as input and as output).
            if out.get(name, part) != part:
                raise RuntimeError(f"two different JSON schemas named {name}")
            out[name] = part
    return out


def _operation(endpoint: Endpoint) -> dict:
    params = [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
               "description": p.description} for p in endpoint.params]
    return {
        "operationId": endpoint.handler.__name__, "tags": ["read"],
        "summary": endpoint.summary, "description": endpoint.description,
        "security": [{"readToken": []}], "parameters": params,
        "responses": {"200": _response("OK", {"$ref": _ref(endpoint.response)}),
                      **_errors(endpoint.errors)},
    }


def openapi_document() -> dict:
    """The OpenAPI 3.1 description of everything under /api/v1."""
    paths: dict[str, dict] = {e.path: {"get": _operation(e)} for e in ENDPOINTS}
    paths[f"{PREFIX}/openapi.json"] = {"get": {
        "operationId": "openapi", "tags": ["read"], "security": [],
        "summary": "This document (no token needed)",
        "responses": {"200": _response("OpenAPI 3.1", {"type": "object"})}}}
    # The probes' side (collector/web/ingest.py, docs/protocol.md): same prefix, other
    # credentials.
    paths[f"{PREFIX}/results"]["post"] = {
        "operationId": "ingest", "tags": ["probes"], "security": [{"probeCredential": []}],
        "summary": "A probe's batch of results (docs/protocol.md)",
        "parameters": [{"name": "Content-Encoding", "in": "header", "required": False,
                        "schema": {"type": "string", "enum": ["gzip"]}}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _ref(Batch)}}}},
        "responses": {"200": _response("stored: every seq up to acked_through",
                                       {"$ref": _ref(Ack)}),
                      **_errors((400, 401, 403, 413, 422))}}
    paths[HEARTBEAT_PATH] = {"post": {
        "operationId": "heartbeat", "tags": ["probes"], "security": [{"probeCredential": []}],
        "summary": "The probe is alive; sent when it sent nothing else for its heartbeat "
                   "period (docs/protocol.md)",
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": {"$ref": _ref(Heartbeat)}}}},
        "responses": {"204": {"description": "heard"}, **_errors((400, 401, 422))}}}
    paths[f"{PREFIX}/enroll"] = {"post": {
        "operationId": "enroll", "tags": ["probes"], "security": [],
        "summary": "A new probe trades its one-time enrollment token for its credential",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _ref(EnrollRequest)}}}},
        "responses": {"200": _response("enrolled", {"$ref": _ref(Enrolled)}),
                      **_errors((400, 403))}}}
    paths[f"{PREFIX}/probe/checks"] = {"get": {
        "operationId": "probe_checks", "tags": ["probes"],
        "security": [{"probeCredential": []}],
        "summary": "The probe's checks from the central checks file",
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {"200": _response("the check list, with an ETag",
                                       {"$ref": _ref(ProbeChecks)}),
                      **_errors((304, 401))}}}
    models: list[tuple[type[BaseModel], str]] = [
        (ErrorBody, "serialization"), *[(e.response, "serialization") for e in ENDPOINTS],
        (Ack, "serialization"), (Enrolled, "serialization"), (ProbeChecks, "serialization"),
        (Batch, "validation"), (EnrollRequest, "validation"), (Heartbeat, "validation")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Unhindered collector API", "version": "1",
                 "description": "Read-only access to missions, check states, intervals, raw "
                                "results and rollups (docs/api.md); and the probes' side of "
                                "the collector (docs/protocol.md)."},
        "paths": paths,
        "components": {
            "schemas": _schemas(models),
            "securitySchemes": {
                "readToken": {"type": "http", "scheme": "bearer", "description":
                              "a read token: unhindered-collector readers add --name NAME"},
                "probeCredential": {"type": "http", "scheme": "bearer", "description":
                                    "a probe's credential (docs/protocol.md)"},
            },
        },
        "tags": [{"name": "read", "description": "the read-only API"},
                 {"name": "probes", "description": "used by probes"}],
    }


@functools.cache
def openapi_bytes() -> bytes:
    return json.dumps(openapi_document(), indent=1).encode()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_bytes(), content_type="application/json")
