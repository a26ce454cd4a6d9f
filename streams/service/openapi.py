"""The OpenAPI 3.1 document of `kycflow serve` (design.md §6), assembled from the parts that
live next to their routes: `ingest.openapi` (webhooks, OAuth2 token) and
`projections.openapi` (the read API). This module adds what belongs to the service as a
whole: the shared `Error` schema, the default security and `GET /openapi.json` itself. A
test walks the served application's router and fails when a route is not described.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ingest import openapi as ingest
from ingest.settings import MAX_HEADERS, MAX_REQUEST_LINE
from projections import openapi as read
from streams.erasure import api as erasure

Schema = dict[str, Any]

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": True,
}
SPEC: Schema = {
    "get": {
        "summary": "This document. No credentials.",
        "responses": {
            "200": {
                "description": "OpenAPI 3.1.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        "security": [],
    }
}

# What the hardened HTTP server (streams/service/protocol.py) answers before any route runs,
# so on every operation; a route's own answer with the same status keeps its description.
_PROTOCOL = {
    "400": "Malformed HTTP request.",
    "408": "Request headers not received within KYCFLOW_HEADER_TIMEOUT (the connection closes).",
    "414": f"Request line longer than {MAX_REQUEST_LINE} bytes.",
    "431": f"A header field over KYCFLOW_MAX_HEADER_SIZE bytes, or over {MAX_HEADERS} fields.",
}


def _with_protocol_errors(paths: dict[str, Schema]) -> dict[str, Schema]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    result = copy.deepcopy(paths)
    for item in result.values():
        for operation in item.values():
            responses = operation["responses"]
            for status, description in _PROTOCOL.items():
                if status in responses:
                    responses[status]["description"] += (
                        f" Or: {description[0].lower()}{description[1:]}"
                    )
                else:
                    responses[status] = {"description": description, **error}
    return result


def _merged(*parts: dict[str, Schema]) -> dict[str, Schema]:
    """Path items from several modules; operations on one path (GET and DELETE of a
    verification) are combined, and one operation described twice is a bug."""
    paths: dict[str, Schema] = {}
    for part in parts:
        for path, item in part.items():
            clash = set(paths.get(path, {})) & set(item)
            assert not clash, f"{path}: {clash} described twice"
            paths[path] = {**paths.get(path, {}), **item}
    return paths


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "kycflow",
        "version": "0.1.0",
        "description": "KYC/KYB provider webhooks in, verification status out.",
    },
    "security": [{"apiToken": []}],
    "paths": _with_protocol_errors(
        _merged(ingest.PATHS, read.PATHS, erasure.PATHS, {"/openapi.json": SPEC})
    ),
    "components": {
        "schemas": {"Error": ERROR, **ingest.SCHEMAS, **read.SCHEMAS},
        "securitySchemes": {**ingest.SECURITY_SCHEMES, **read.SECURITY_SCHEMES},
    },
}


async def _serve(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def openapi_route() -> web.RouteDef:
    """`GET /openapi.json`, open to all: it describes routes, not data."""
    return web.get("/openapi.json", _serve, allow_head=False)
