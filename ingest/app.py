"""HTTP ingest: `POST /webhooks/{provider}` and `POST /oauth/token` (design.md §6).

Order of work per request: size limit, read the body (with a deadline against slow
clients), authenticate over the exact bytes, build the envelope, append it durably, and
only then answer 202. Unauthenticated requests store nothing; an authenticated body that
the core cannot read is stored anyway (the processor quarantines it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from multidict import MultiDict

from ingest.auth import Rejection, authenticate, client_address
from ingest.oauth import OAuthError, issue_token
from ingest.rawlog import Receipt
from ingest.settings import IngestSettings
from ingest.writer import WriterUnavailable
from statemachines.envelope import PROVIDERS, RawEnvelope

# The scheme each provider can answer a 401 with (iDenfy signs; it has no challenge).
CHALLENGES = {"ondato": 'Basic realm="kycflow"', "idwise": 'Bearer realm="kycflow"'}


class Appender(Protocol):
    async def append(self, env: RawEnvelope) -> Receipt: ...


class IngestMetrics(Protocol):
    def accepted(self, provider: str, duplicate: bool, seconds: float) -> None: ...

    def rejected(self, provider: str, status: int) -> None: ...


def error(status: int, reason: str, **headers: str) -> web.HTTPException:
    """A refusal with a JSON body saying why (raised, so handlers stay linear)."""
    refusal = web.HTTPException(
        text=f'{{"error": {json.dumps(reason)}}}',
        content_type="application/json",
        headers=headers or None,
    )
    refusal.set_status(status)
    return refusal


def ingest_routes(
    settings: IngestSettings,
    appender: Appender,
    clock: Callable[[], str],
    metrics: IngestMetrics,
) -> list[web.RouteDef]:
    async def receive(request: web.Request) -> web.Response:
        started = time.perf_counter()
        provider = request.match_info["provider"]
        try:
            receipt = await _receive(request, provider, settings, appender, clock)
        except web.HTTPException as refusal:
            if provider in PROVIDERS:
                metrics.rejected(provider, refusal.status)
            raise
        metrics.accepted(provider, receipt.duplicate, time.perf_counter() - started)
        # Formatted directly: this is the hot path, and the shape is two fields.
        body = b'{"offset": %d, "duplicate": %s}' % (
            receipt.offset,
            b"true" if receipt.duplicate else b"false",
        )
        return web.Response(body=body, status=202, content_type="application/json")

    async def token(request: web.Request) -> web.Response:
        # A multidict, not a dict: a repeated parameter must stay visible (RFC 6749 §3.2).
        try:
            posted = await request.post() if request.can_read_body else MultiDict[str]()
        except web.HTTPRequestEntityTooLarge:
            raise error(413, "token request too large") from None
        except (ValueError, UnicodeDecodeError, LookupError, AssertionError, RuntimeError):
            # aiohttp raises these for undecodable or malformed form bodies.
            body = {"error": "invalid_request", "error_description": "malformed form body"}
            return web.json_response(body, status=400)
        form = MultiDict[str]((k, v) for k, v in posted.items() if isinstance(v, str))
        try:
            issued = issue_token(settings, form, request.headers.get("Authorization"), time.time())
        except OAuthError as exc:
            body = {"error": exc.error, "error_description": exc.description}
            headers = {"WWW-Authenticate": "Basic"} if exc.status == 401 else None
            return web.json_response(body, status=exc.status, headers=headers)
        return web.json_response(issued, headers={"Cache-Control": "no-store"})

    return [web.post("/webhooks/{provider}", receive), web.post("/oauth/token", token)]


async def _receive(
    request: web.Request,
    provider: str,
    settings: IngestSettings,
    appender: Appender,
    clock: Callable[[], str],
) -> Receipt:
    if provider not in PROVIDERS:
        raise error(404, f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # Decompressing would change the bytes we must store and that signatures cover;
        # no provider compresses webhooks.
        raise error(415, f"Content-Encoding {encoding!r} is not accepted; send the body as is")
    if (request.content_length or 0) > settings.max_body:
        raise error(413, f"body larger than {settings.max_body} bytes")
    try:
        if request.content.is_eof():  # already fully received: no deadline to arm
            body = await request.read()
        else:
            async with asyncio.timeout(settings.read_timeout):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise error(413, f"body larger than {settings.max_body} bytes") from None
    except TimeoutError:
        raise error(408, f"body not received within {settings.read_timeout:g} s") from None
    address = client_address(request.remote or "", request.headers, settings.trusted_proxies)
    try:
        method = authenticate(provider, request.headers, body, address, settings, time.time())
    except Rejection as exc:
        challenge = CHALLENGES.get(provider) if exc.status == 401 else None
        extra = {"WWW-Authenticate": challenge} if challenge else {}
        raise error(exc.status, exc.reason, **extra) from None
    env = RawEnvelope.receive(
        provider, body, request.headers.items(), clock(), auth_method=method, remote_addr=address
    )
    try:
        return await appender.append(env)
    except WriterUnavailable:
        raise error(503, "the log is unavailable; retry later", **{"Retry-After": "1"}) from None
