"""HTTP ingest: `POST /webhooks/{provider}` and `POST /oauth/token` (design.md §6).

Order of work per request: refuse encoded bodies, size limit, read the body (with a deadline
against slow clients), authenticate over the exact bytes, build the envelope (never keeping
a header that carries a secret), bound what it stores, append it durably, and only then
answer 202. Unauthenticated requests store nothing; an authenticated body that
the core cannot read is stored anyway (the processor quarantines it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict

from ingest.appending import Receipt
from ingest.auth import Rejection, authenticate, client_address
from ingest.oauth import OAuthError, issue_token
from ingest.settings import MAX_DEDUP_KEY, MAX_KEPT_HEADER, MAX_TOKEN_REQUEST, IngestSettings
from ingest.writer import RecordTooLarge, WriterUnavailable
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
    secret = settings.secret_headers

    async def receive(request: web.Request) -> web.Response:
        started = time.perf_counter()
        provider = request.match_info["provider"]
        try:
            receipt = await _receive(request, provider, settings, secret, appender, clock)
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
        try:
            form = await _form(request, settings)
            issued = issue_token(settings, form, request.headers.get("Authorization"), time.time())
        except OAuthError as exc:
            headers = {"WWW-Authenticate": "Basic"} if exc.status == 401 else None
            return web.json_response(exc.body(), status=exc.status, headers=headers)
        return web.json_response(issued, headers={"Cache-Control": "no-store"})

    return [web.post("/webhooks/{provider}", receive), web.post("/oauth/token", token)]


def codings_refusal(headers: CIMultiDictProxy[str]) -> str | None:
    """Why the body's content or transfer codings are refused, if they are.

    Decoding would change the bytes we store and that signatures cover, and no provider
    compresses webhooks. Every copy and every list item counts: a check of the first header
    alone let `identity` then `gzip` through.
    """
    for value in headers.getall("Content-Encoding", ()):
        if any(coding.strip().lower() not in ("", "identity") for coding in value.split(",")):
            return "Content-Encoding other than identity is not accepted; send the body as is"
    codings = [
        c.strip().lower() for v in headers.getall("Transfer-Encoding", ()) for c in v.split(",")
    ]
    if codings and codings != ["chunked"]:
        return "Transfer-Encoding other than chunked is not accepted"
    return None


async def read_body(request: web.Request, limit: int, deadline: float) -> bytes:
    """The exact body bytes, or a refusal: 413 over `limit`, 408 after `deadline` seconds,
    400 for broken framing (bad chunks, a connection closed mid-body)."""
    if (request.content_length or 0) > limit:
        raise error(413, f"body larger than {limit} bytes")
    try:
        if request.content.is_eof():  # already fully received: no deadline to arm
            return await request.read()
        async with asyncio.timeout(deadline):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise error(413, f"body larger than {limit} bytes") from None
    except TimeoutError:
        raise error(408, f"body not received within {deadline:g} s") from None
    except (web.RequestPayloadError, ConnectionError):
        raise error(400, "malformed body framing") from None


async def _receive(
    request: web.Request,
    provider: str,
    settings: IngestSettings,
    secret: frozenset[str],
    appender: Appender,
    clock: Callable[[], str],
) -> Receipt:
    if provider not in PROVIDERS:
        raise error(404, f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    refusal = codings_refusal(request.headers)
    if refusal is not None:
        raise error(415, refusal)
    body = await read_body(request, settings.max_body, settings.read_timeout)
    headers = request.headers
    address = client_address(request.remote or "", headers, settings.trusted_proxies)
    try:
        method = authenticate(provider, headers, body, address, settings, time.time())
    except Rejection as exc:
        challenge = CHALLENGES.get(provider) if exc.status == 401 else None
        extra = {"WWW-Authenticate": challenge} if challenge else {}
        raise error(exc.status, exc.reason, **extra) from None
    # A header that carries a configured secret is never stored, even if allow-listed.
    pairs = [(n, v) for n, v in headers.items() if n.lower() not in secret] if secret else headers
    env = RawEnvelope.receive(
        provider, body, pairs, clock(), auth_method=method, remote_addr=address
    )
    _check_stored(env, headers)
    try:
        return await appender.append(env)
    except RecordTooLarge as exc:
        raise error(413, str(exc)) from None
    except WriterUnavailable:
        raise error(503, "the log is unavailable; retry later", **{"Retry-After": "1"}) from None


def _check_stored(env: RawEnvelope, headers: CIMultiDictProxy[str]) -> None:
    """Bound what one delivery stores besides its body (the limits in ingest.settings)."""
    for name, value in env.headers.items():
        if len(value) > MAX_KEPT_HEADER:
            raise error(431, f"{name} header longer than {MAX_KEPT_HEADER} characters")
        if len(headers.getall(name)) > 1:
            # Only one copy could be stored, and which one counts would be a guess.
            raise error(400, f"repeated {name} header")
    if len(env.dedup_key) > MAX_DEDUP_KEY:
        raise error(400, f"delivery id too long (dedup key over {MAX_DEDUP_KEY} characters)")


async def _form(request: web.Request, settings: IngestSettings) -> MultiDict[str]:
    """The token request's form (RFC 6749 §4.4.2: urlencoded), read within the deadline.

    A multidict, not a dict: a repeated parameter must stay visible (RFC 6749 §3.2).
    """
    refusal = codings_refusal(request.headers)
    if refusal is not None:
        raise OAuthError(415, "invalid_request", refusal)
    if request.content_type not in ("", "application/x-www-form-urlencoded"):
        raise OAuthError(415, "invalid_request", "send application/x-www-form-urlencoded")
    if not request.can_read_body:
        return MultiDict[str]()
    what = "the token request body"
    if (request.content_length or 0) > MAX_TOKEN_REQUEST:  # refused before waiting for it
        raise OAuthError(413, "invalid_request", f"{what} is too large")
    try:
        async with asyncio.timeout(settings.read_timeout):
            posted = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise OAuthError(413, "invalid_request", f"{what} is too large") from None
    except TimeoutError:
        timeout = settings.read_timeout
        raise OAuthError(408, "invalid_request", f"{what} not received in {timeout:g} s") from None
    except (ValueError, UnicodeDecodeError, LookupError, AssertionError, RuntimeError):
        # aiohttp raises these for undecodable or malformed form bodies.
        raise OAuthError(400, "invalid_request", "malformed form body") from None
    except (web.RequestPayloadError, ConnectionError):
        raise OAuthError(400, "invalid_request", "malformed body framing") from None
    return MultiDict[str]((k, v) for k, v in posted.items() if isinstance(v, str))
