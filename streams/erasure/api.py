"""`DELETE /verifications/{provider}/{kind}/{id}`: erase a subject while the service runs.

The same bearer token as the read API, checked by the read API's own guard (constant
time). Without a token the service listens on loopback only (`ServeSettings.refusal`);
this route also refuses a peer that is not loopback then. The erasure runs in a thread:
it waits on the raw log's write lock and for the processor to fold the erasure record.

    ?scope=personal (default) | all     keep the decision trail, or erase it too
    ?keep_reference=false (default) | true

200 with what was erased; 404 for an unknown subject; 400 for a bad parameter; 503 with
Retry-After when the database stayed locked or could not be written (the erasure's
transaction rolled back, or it committed and only its tidying failed: asking again
completes it either way), and in Kafka mode when the broker failed midway (not completed:
asking again completes it) or the erasure is done but its audit entry was not written
(asking again records it). The audit trail names the caller as `api:` and a fingerprint
of the token, never the token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import ipaddress
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingest.sealing import MasterKeys
from projections.api import _guarded as guarded
from statemachines.reduced import SCOPES
from streams.erasure import Erased, Request, UnknownSubject
from streams.erasure.audit import AuditFailed
from streams.kafka.config import KafkaSettings

log = logging.getLogger("kycflow.erasure")
Eraser = Callable[[Request], list[Erased]]
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
RETRY_AFTER = "5"  # seconds: a broker that failed is rarely back sooner


class Unavailable(Exception):
    """Kafka mode: the broker failed before the erasure was done; asking again completes
    it (`streams.erasure.kafka.Incomplete`, not imported with this module)."""


def token_fingerprint(token: str | None) -> str:
    """Who asked, for the audit trail: 12 hex digits of a hash of the token."""
    if not token:
        return "api:loopback"
    digest = hashlib.sha256(b"kycflow api token\x00" + token.encode("utf-8", "surrogateescape"))
    return "api:" + digest.hexdigest()[:12]


def eraser(db_path: str, master: MasterKeys | None, kafka: KafkaSettings | None) -> Eraser:
    """The erasure of this service's mode."""
    if kafka is not None:

        def in_kafka(request: Request) -> list[Erased]:
            from streams.erasure import kafka as kafka_erasure  # built alongside; see the CLI

            try:
                erased: list[Erased] = kafka_erasure.erase(
                    request, settings=kafka, master=master, db_path=db_path
                )
            except kafka_erasure.Incomplete as exc:
                raise Unavailable(str(exc)) from exc
            return erased

        return in_kafka
    from streams.erasure import embedded

    return functools.partial(embedded.erase, db_path=db_path, master=master)


def erase_routes(
    db_path: str,
    *,
    api_token: str | None,
    master: MasterKeys | None,
    kafka: KafkaSettings | None = None,
) -> list[web.RouteDef]:
    """The erasure route, to add with `app.add_routes(...)`."""
    erase = eraser(db_path, master, kafka)
    by = token_fingerprint(api_token)

    async def delete(request: web.Request) -> web.StreamResponse:
        if not api_token and not _loopback(request.remote):
            return _error(403, "erasure needs KYCFLOW_API_TOKEN beyond loopback")
        try:
            wanted = _parse(request, by)
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            done = await asyncio.to_thread(erase, wanted)
        except UnknownSubject:
            return _error(404, "unknown subject", subject=wanted.subjects[0])
        except (AuditFailed, Unavailable) as exc:  # asking again completes it, or records it
            return _unavailable(str(exc), wanted)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full…
            log.warning("erasure over the API failed: %s: %s", type(exc).__name__, exc)
            reason = "the database is locked or cannot be written; asking again completes it"
            return _unavailable(reason, wanted)
        except ImportError:  # Kafka-mode erasure not available in this build
            return _error(501, "erasure is not supported in Kafka mode yet")
        return web.json_response(dataclasses.asdict(done[0]))

    path = "/verifications/{provider}/{kind}/{id}"
    return [web.delete(path, guarded(delete, api_token))]


def _parse(request: web.Request, by: str) -> Request:
    info, query = request.match_info, request.query
    scope = query.get("scope", "personal")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    keep = query.get("keep_reference", "false").lower()
    if keep not in _BOOLEANS:
        raise ValueError("keep_reference must be true or false")
    unknown = set(query) - {"scope", "keep_reference"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    subject = f"{info['provider']}/{info['kind']}/{info['id']}"
    return Request((subject,), scope=scope, keep_reference=_BOOLEANS[keep], by=by)


def _unavailable(reason: str, wanted: Request) -> web.Response:
    response = _error(503, reason, subject=wanted.subjects[0])
    response.headers["Retry-After"] = RETRY_AFTER
    return response


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False  # a Unix socket or an unparsable peer: not known to be local


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


# The operation, for the OpenAPI document (streams.service.openapi merges it into the
# read API's item for this path).
PATHS: dict[str, Any] = {
    "/verifications/{provider}/{kind}/{id}": {
        "delete": {
            "summary": "Erase a subject's personal data (docs/personal-data.md).",
            "parameters": [
                {
                    "name": "scope",
                    "in": "query",
                    "schema": {"enum": list(SCOPES), "default": "personal"},
                    "description": "personal: keep the decision trail; all: erase it too.",
                },
                {
                    "name": "keep_reference",
                    "in": "query",
                    "schema": {"enum": ["true", "false"], "default": "false"},
                },
            ],
            "responses": {
                "200": {
                    "description": "Erased: the subject, when, deliveries reduced, "
                    "quarantined deliveries dropped, data keys destroyed."
                },
                "400": {"description": "A bad scope or keep_reference."},
                "401": {"description": "Missing or invalid bearer token."},
                "403": {"description": "No API token configured and the caller is not local."},
                "404": {"description": "Unknown subject."},
                "503": {
                    "description": "The database stayed locked or could not be written, or "
                    "in Kafka mode the broker failed before the erasure was done: asking "
                    "again completes it. Or it is done but its audit entry was not written "
                    "(asking again records it).",
                    "headers": {
                        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}
                    },
                },
            },
        }
    }
}
