"""The OpenAPI 3.1 description of every HTTP route the service exposes (design.md §6).

Kept as plain data next to the composition root, which is the one place that knows both
the ingest and the read routes; a test walks the assembled application's router and fails
when a served route is missing here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

Schema = dict[str, Any]

PROVIDERS = ["idenfy", "ondato", "idwise"]
KINDS = "kyc, kyb, kyb_document, aml_monitoring, or another kind of the vocabulary"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


def _json(description: str, schema: Schema, media: str = "application/json") -> Schema:
    return {"description": description, "content": {media: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


def _param(place: str, name: str, description: str, **schema: Any) -> Schema:
    """A parameter `in` path, query or header; path parameters are required by definition."""
    where = {"in": place, "required": True} if place == "path" else {"in": place}
    return {"name": name, **where, "description": description, "schema": schema}


def _bearer(description: str) -> Schema:
    return {"type": "http", "scheme": "bearer", "description": description}


READ_ERRORS = {
    "401": _error("Missing or wrong API token (sent with `WWW-Authenticate: Bearer`)."),
    "503": _error("The projections database cannot be read yet; retry."),
}
SUBJECT = [
    _param("path", "provider", "Provider of the subject.", enum=PROVIDERS),
    _param("path", "kind", f"Subject kind: {KINDS}.", type="string"),
    _param("path", "id", "The provider's id of the subject (URL-encoded).", type="string"),
]

_TYPES: dict[str, Schema] = {
    "int": {"type": "integer"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "decider": {"enum": ["auto", "manual", None]},
    "provider": {"enum": PROVIDERS},
}


def _record(spec: str, **notes: str) -> Schema:
    """An object from `name:type` words (`type?` is nullable), every field required."""
    properties: dict[str, Schema] = {}
    for word in spec.split():
        name, _, kind = word.partition(":")
        schema = dict(_TYPES[kind.rstrip("?")])
        if kind.endswith("?"):
            schema["type"] = [schema["type"], "null"]
        if name in notes:
            schema["description"] = notes[name]
        properties[name] = schema
    return _object(list(properties), **properties)


SCHEMAS: dict[str, Schema] = {
    "Error": {**_object(["error"], error={"type": "string"}), "additionalProperties": True},
    "OAuthError": _object(
        ["error"], error={"type": "string"}, error_description={"type": "string"}
    ),
    "Verification": _record(
        "provider:provider kind:str id:str status:str? final:bool decided_by:decider "
        "attempt:int provider_status:str? reasons:tags version:int updated_at:str? "
        "cause_event:str? cause_offset:int? parent_kind:str? parent_id:str?",
        final="No further decision expected.",
        version="Grows with every distinct event of the subject.",
        updated_at="Logged receive time of the event that last changed the subject.",
        cause_offset="Raw-log offset of that event.",
    ),
    "Transition": _record(
        "seq:int version:int from_status:str? to_status:str trigger:str attempt:int final:bool "
        "decided_by:decider event_type:str dedup_key:str offset:int received_at:str "
        "provider_status:str? reasons:tags",
        seq="Position in the status feed (the SSE id).",
        offset="Raw-log offset of the delivery that caused the change.",
        received_at="Ingest receive time of that delivery.",
    ),
    "SubjectEvent": _record(
        "offset:int event_type:str effect:str reason:str? version:int received_at:str",
        effect="transition, duplicate, late, superseded, unchanged, history or unknown.",
    ),
    "History": _object(
        ["verification", "transitions", "events"],
        verification=_ref("Verification"),
        transitions={"type": "array", "items": _ref("Transition")},
        events={"type": "array", "items": _ref("SubjectEvent")},
    ),
    "Page": _object(
        ["items", "next_cursor"],
        items={"type": "array", "items": _ref("Verification")},
        next_cursor={"type": ["string", "null"], "description": "Next `cursor`; null: last page."},
    ),
    "FeedEvent": {
        "description": "The `data` of one `status` event: the subject and the transition.",
        "allOf": [_record("provider:provider kind:str id:str"), _ref("Transition")],
    },
    "Accepted": _record(
        "offset:int duplicate:bool",
        offset="Raw-log offset of this delivery.",
        duplicate="The same delivery was received before; it changes nothing.",
    ),
    "Token": _object(
        ["access_token", "token_type", "expires_in"],
        access_token={"type": "string"},
        token_type={"const": "Bearer"},
        expires_in={"type": "integer", "description": "Lifetime in seconds."},
    ),
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "idenfySignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Idenfy-Signature",
        "description": "iDenfy: hex HMAC-SHA256 of the exact body with the signing key.",
    },
    "basic": {"type": "http", "scheme": "basic", "description": "Ondato or IDWise basic auth."},
    "providerBearer": _bearer("IDWise: the configured static token."),
    "ondatoOAuth2": {
        "type": "oauth2",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}},
        "description": "Ondato's OAuth2 mode: a bearer token from `POST /oauth/token`.",
    },
    "apiToken": _bearer("`KYCFLOW_API_TOKEN`; required by the read API whenever it is set."),
}
# Alternatives: each provider uses the one it is configured for (design.md §7, fail closed).
WEBHOOK_SECURITY: list[Schema] = [
    {name: []} for name in ("idenfySignature", "basic", "ondatoOAuth2", "providerBearer")
]


def _get(
    summary: str, responses: dict[str, Schema], errors: Schema = READ_ERRORS, **extra: Any
) -> Schema:
    return {"get": {"summary": summary, "responses": {**responses, **errors}, **extra}}


WEBHOOK = {
    "post": {
        "summary": "Receive a provider webhook; 202 once it is durably in the raw log.",
        "security": WEBHOOK_SECURITY,
        "parameters": [_param("path", "provider", "The sending provider.", enum=PROVIDERS)],
        "requestBody": {
            "required": True,
            "description": "The provider's raw JSON body, stored byte for byte.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": {
            "202": _json("Durably appended.", _ref("Accepted")),
            "400": _error("Malformed request."),
            "401": _error("Bad or missing credentials."),
            "403": _error("Remote address not allowed."),
            "404": _error("Unknown provider."),
            "408": _error("Body not received in time."),
            "413": _error("Body too large."),
            "503": _error("Raw log unavailable; retry."),
        },
    }
}
TOKEN = {
    "post": {
        "summary": "OAuth2 client-credentials token (RFC 6749 §4.4) for Ondato's OAuth2 mode.",
        "security": [{"basic": []}, {}],  # or client_id/client_secret form fields
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": _object(
                        ["grant_type"],
                        grant_type={"const": "client_credentials"},
                        client_id={"type": "string"},
                        client_secret={"type": "string"},
                        scope={"type": "string"},
                    )
                }
            },
        },
        "responses": {
            "200": _json("A bearer token.", _ref("Token")),
            "400": _json("Invalid request or grant type.", _ref("OAuthError")),
            "401": _json("Client authentication failed; no token.", _ref("OAuthError")),
        },
    }
}
FEED = _get(
    "Server-Sent Events of status changes (`id: <seq>`, `event: status`, `data: <FeedEvent>`).",
    {
        "200": _json(
            "Endless; `: keep-alive` every 15 s.", {"type": "string"}, "text/event-stream"
        ),
        "400": _error("Last-Event-ID / after is not a non-negative integer."),
    },
    parameters=[
        _param("header", "Last-Event-ID", "Resume after this feed position.", type="string"),
        _param(
            "query", "after", "Resume after this position, or `latest` (default 0).", type="string"
        ),
    ],
)
LISTING = _get(
    "List verifications in subject order, one keyset page at a time.",
    {
        "200": _json("A page.", _ref("Page")),
        "400": _error("Limit is not an integer, or the cursor is invalid."),
    },
    parameters=[
        _param("query", "provider", "Only this provider.", enum=PROVIDERS),
        _param("query", "kind", "Only this kind.", type="string"),
        _param("query", "status", "Only this status.", type="string"),
        _param("query", "limit", "Page size, clamped to 1..500.", type="integer", default=50),
        _param("query", "cursor", "The previous page's `next_cursor`.", type="string"),
    ],
)
_DB_HEALTH = _object(
    ["readable"],
    readable={"type": "boolean"},
    reason={"type": "string", "description": "Why not (when not readable)."},
    feed_head={"type": "integer", "description": "Latest feed position (when readable)."},
)
HEALTH = _get(
    "Liveness (always 200) and whether the projections are readable. No credentials.",
    {"200": _json("Alive.", _object(["status", "db"], status={"const": "ok"}, db=_DB_HEALTH))},
    errors={},
    security=[],
)
METRICS = _get(
    "Prometheus metrics (text exposition format 0.0.4).",
    {"200": _json("Metrics.", {"type": "string"}, "text/plain")},
    errors={"401": READ_ERRORS["401"]},  # metrics are in memory: no database read
)
SPEC = _get(
    "This document. No credentials.",
    {"200": _json("OpenAPI 3.1.", {"type": "object"})},
    errors={},
    security=[],
)

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "kycflow",
        "version": "0.1.0",
        "description": "KYC/KYB provider webhooks in, verification status out.",
    },
    "security": [{"apiToken": []}],
    "paths": {
        "/webhooks/{provider}": WEBHOOK,
        "/oauth/token": TOKEN,
        "/verifications": LISTING,
        "/verifications/{provider}/{kind}/{id}": _get(
            "A subject's current verification status.",
            {"200": _json("Found.", _ref("Verification")), "404": _error("Unknown subject.")},
            parameters=SUBJECT,
        ),
        "/verifications/{provider}/{kind}/{id}/history": _get(
            "A subject's transitions and every delivery that touched it.",
            {"200": _json("Found.", _ref("History")), "404": _error("Unknown subject.")},
            parameters=SUBJECT,
        ),
        "/feed": FEED,
        "/healthz": HEALTH,
        "/metrics": METRICS,
        "/openapi.json": SPEC,
    },
    "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
}


async def _serve(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def openapi_route() -> web.RouteDef:
    """`GET /openapi.json`, open to all: it describes routes, not data."""
    return web.get("/openapi.json", _serve, allow_head=False)
