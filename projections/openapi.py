"""The OpenAPI 3.1 description of the read API (`projections.api`): verifications, history,
listing, the status feed, health and metrics, with their schemas and the API token scheme.

Plain data next to the routes it describes; `streams.service.openapi` assembles it with the
ingest part into the served document. `#/components/schemas/Error` is defined there.
"""

from __future__ import annotations

from typing import Any

from projections import listing
from statemachines.envelope import PROVIDERS
from statemachines.events import MAX_REFERENCE
from statemachines.fold import MAX_REFERENCES
from statemachines.machines import KINDS

Schema = dict[str, Any]


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


READ_ERRORS = {
    "401": {
        **_error("Missing, wrong or repeated API token, when `KYCFLOW_API_TOKEN` is set."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    },
    "503": {
        **_error("The projections database cannot be read yet (`reason` says why); retry."),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
    },
}
UNKNOWN = _error("Unknown subject (also for a provider or kind outside the lists).")
SUBJECT = [
    _param("path", "provider", "Provider of the subject.", enum=list(PROVIDERS)),
    _param("path", "kind", "Subject kind.", enum=list(KINDS)),
    _param("path", "id", "The provider's id of the subject (URL-encoded).", type="string"),
]

REFERENCE = (
    "The integrator's own id for the subject: iDenfy clientId, Ondato externalReferenceId, "
    "IDWise referenceNo (the smallest, if several were sent); null when none was sent."
)
_TYPES: dict[str, Schema] = {
    "int": {"type": "integer"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "decider": {"enum": ["auto", "manual", None]},
    "provider": {"enum": list(PROVIDERS)},
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
    "Verification": _record(
        "provider:provider kind:str id:str reference:str? references:tags status:str? "
        "final:bool decided_by:decider attempt:int provider_status:str? reasons:tags "
        "version:int updated_at:str? cause_event:str? cause_offset:int? parent_kind:str? "
        "parent_id:str? erased_at:str?",
        id="The provider's id of the subject (an iDenfy scanRef, an Ondato IDV id …).",
        reference=REFERENCE,
        references="Every integrator id the provider sent for the subject (the primary one "
        f"and others, such as an iDenfy externalRef), sorted; at most {MAX_REFERENCES}.",
        final="No further decision expected.",
        version="Grows with every distinct event of the subject (from 1 again after an "
        "erasure of everything).",
        updated_at="Logged receive time of the event that last changed the subject.",
        cause_offset="Raw-log offset of that event.",
        erased_at="When the subject's personal data was last erased (the erasure's log time); "
        "null if never. The decision trail stays unless everything was erased; then only "
        "this bare record (status null, version 1) is left, until a new event arrives.",
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
        effect="transition, duplicate, late, superseded, unchanged, history, unknown or erased.",
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
        "allOf": [
            _record(
                "provider:provider kind:str id:str reference:str? erased_at:str?",
                reference=f"{REFERENCE} As known when the event is sent (in Kafka mode null "
                "until the subject's status record is projected).",
                erased_at="When the subject's personal data was last erased, as known when "
                "the event is sent; null if it never was.",
            ),
            _ref("Transition"),
        ],
    },
}

SECURITY_SCHEMES: dict[str, Schema] = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`KYCFLOW_API_TOKEN`; required by the read API whenever it is set.",
    },
}


def _get(
    summary: str, responses: dict[str, Schema], errors: Schema = READ_ERRORS, **extra: Any
) -> Schema:
    return {"get": {"summary": summary, "responses": {**responses, **errors}, **extra}}


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
    "List verifications, one keyset page at a time: by subject key (the default), or the most "
    "recently changed first (`order=newest`).",
    {
        "200": _json("A page.", _ref("Page")),
        "400": _error(
            "A parameter is invalid: a filter value outside its list, a limit outside "
            f"1..{listing.MAX_LIMIT}, an unknown order, a time that is not ISO-8601, a cursor "
            f"not made for this order, a reference over {MAX_REFERENCE} characters, or a "
            "parameter given twice or empty. `error` says which."
        ),
    },
    parameters=[
        _param("query", "provider", "Only this provider.", enum=list(PROVIDERS)),
        _param("query", "kind", "Only this kind.", enum=list(KINDS)),
        _param("query", "status", "Only this status.", enum=list(listing.STATUSES)),
        _param(
            "query",
            "reference",
            "Only verifications that carry this integrator id, as their `reference` or among "
            "their `references` (exact match).",
            type="string",
            minLength=1,
            maxLength=MAX_REFERENCE,
        ),
        _param(
            "query",
            "id",
            "Only verifications with this provider id, whatever their kind (exact match), "
            "e.g. an iDenfy scanRef.",
            type="string",
            minLength=1,
        ),
        _param(
            "query",
            "updated_since",
            "Only verifications changed at or after this time (RFC 3339; without an offset, "
            "UTC), compared with `updated_at`.",
            type="string",
            format="date-time",
        ),
        _param(
            "query",
            "order",
            "`key`: by subject key (provider/kind/id). `newest`: by `updated_at`, latest "
            "first (ties by subject key, descending).",
            enum=list(listing.ORDERS),
            default="key",
        ),
        _param(
            "query",
            "limit",
            "Page size.",
            type="integer",
            minimum=1,
            maximum=listing.MAX_LIMIT,
            default=listing.DEFAULT_LIMIT,
        ),
        _param(
            "query",
            "cursor",
            "The previous page's `next_cursor`, with the same `order`.",
            type="string",
        ),
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

PATHS: dict[str, Schema] = {
    "/verifications": LISTING,
    "/verifications/{provider}/{kind}/{id}": _get(
        "A subject's current verification status.",
        {"200": _json("Found.", _ref("Verification")), "404": UNKNOWN},
        parameters=SUBJECT,
    ),
    "/verifications/{provider}/{kind}/{id}/history": _get(
        "A subject's transitions and every delivery that touched it.",
        {"200": _json("Found.", _ref("History")), "404": UNKNOWN},
        parameters=SUBJECT,
    ),
    "/feed": FEED,
    "/healthz": HEALTH,
    "/metrics": METRICS,
}
