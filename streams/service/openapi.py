"""The OpenAPI 3.1 document of `kycflow serve` (design.md §6), assembled from the parts that
live next to their routes: `ingest.openapi` (webhooks, OAuth2 token) and
`projections.openapi` (the read API). This module adds what belongs to the service as a
whole: the shared `Error` schema, the default security and `GET /openapi.json` itself. A
test walks the served application's router and fails when a route is not described.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ingest import openapi as ingest
from projections import openapi as read

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

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "kycflow",
        "version": "0.1.0",
        "description": "KYC/KYB provider webhooks in, verification status out.",
    },
    "security": [{"apiToken": []}],
    "paths": {**ingest.PATHS, **read.PATHS, "/openapi.json": SPEC},
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
