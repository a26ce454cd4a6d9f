"""The HTTP read API (design.md §6): verifications, their history, listings, the status feed.

`read_routes` returns plain route definitions so the composition root can mount them in
whatever application also serves ingest. Reads run on one read-only connection per
process, opened on first use, so the API starts before the processor has created the
database and can never write to it. The queries are indexed point or range reads of
microseconds and WAL readers never wait for the writer, so they run on the event loop
instead of paying a thread hand-off per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from projections import listing, queries

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FEED_BATCH = 500
KEEPALIVE = 15.0
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text exposition


class Unavailable(Exception):
    """The projections cannot be read right now (no file yet, not migrated, I/O error)."""


class Reader:
    """A lazily opened read-only connection to the projections, reopened after errors."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        if self.conn is None:
            if not self.path.is_file():
                raise Unavailable(f"projections database {self.path} does not exist yet")
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            try:
                # Used only from the event loop thread; the flag lets the finalizer close it
                # from whichever thread collects the reader.
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                raise Unavailable(f"cannot open projections database: {exc}") from None
            weakref.finalize(self, conn.close)  # closed explicitly, never left to the GC
            self.conn = conn
        return self.conn

    def run(self, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`query(connection, *args, **kwargs)`; any SQLite error becomes `Unavailable`."""
        try:
            return query(self.connect(), *args, **kwargs)
        except sqlite3.Error as exc:
            # A fresh connection on the next request recovers from a replaced file.
            self.close()
            raise Unavailable(f"projections not readable: {exc}") from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _guarded(handler: Handler, api_token: str | None) -> Handler:
    """Require `Authorization: Bearer <api_token>` (RFC 6750) when a token is configured.

    As ingest does: both sides are hashed before the constant-time comparison, so neither
    the content nor the length of the token leaks through timing, and two Authorization
    headers are refused rather than one of them picked. The comparison is on the exact
    bytes configured: no decoding, so no two spellings of one token.
    """
    if not api_token:  # unset or empty: the read API is open (serve it on loopback only)
        return handler
    expected = _digest(api_token)

    async def guarded(request: web.Request) -> web.StreamResponse:
        headers = request.headers.getall("Authorization", [])
        if len(headers) > 1:
            return _unauthorized("repeated Authorization header", 'Bearer realm="kycflow"')
        # Only spaces and tabs separate (RFC 9110 §5.6.3, §11.4): str.strip() would also
        # drop Unicode spaces, accepting a token with one appended.
        scheme, _, presented = (headers[0] if headers else "").strip(" \t").partition(" ")
        presented = presented.strip(" \t")
        if scheme.lower() != "bearer" or not presented:
            return _unauthorized("missing bearer token", 'Bearer realm="kycflow"')
        if not hmac.compare_digest(_digest(presented), expected):
            return _unauthorized("invalid token", 'Bearer realm="kycflow", error="invalid_token"')
        return await handler(request)

    return guarded


def _digest(text: str) -> bytes:
    """SHA-256 of the text's bytes: UTF-8, with any bytes that the environment or aiohttp
    carried as surrogate escapes restored as they were."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).digest()


def _unauthorized(message: str, challenge: str) -> web.Response:
    response = _error(401, message)
    response.headers["WWW-Authenticate"] = challenge
    return response


def _unavailable(exc: Unavailable) -> web.Response:
    response = _error(503, "projections unavailable", reason=str(exc))
    response.headers["Retry-After"] = "1"
    return response


class ReadApi:
    """The handlers, bound to one reader and the metrics renderer."""

    def __init__(
        self, reader: Reader, render_metrics: Callable[[], str], poll: float, keepalive: float
    ) -> None:
        self.reader, self.render_metrics = reader, render_metrics
        self.poll, self.keepalive = poll, keepalive

    async def verification(self, request: web.Request) -> web.StreamResponse:
        return self._subject(request, queries.verification)

    async def history(self, request: web.Request) -> web.StreamResponse:
        return self._subject(request, queries.history)

    def _subject(self, request: web.Request, query: Callable[..., Any]) -> web.Response:
        info = request.match_info
        subject = (info["provider"], info["kind"], info["id"])
        try:
            found = self.reader.run(query, *subject)
        except Unavailable as exc:
            return _unavailable(exc)
        if found is None:
            return _error(404, "unknown subject", subject=queries.subject_key(*subject))
        return web.json_response(found)

    async def listing(self, request: web.Request) -> web.StreamResponse:
        try:  # checked first: bad input is a 400 even while the database is unreadable
            wanted = listing.parse(request.query.items())
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            return web.json_response(self.reader.run(listing.page, wanted))
        except Unavailable as exc:
            return _unavailable(exc)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """Liveness of the process (always 200) and whether the projections can be read."""
        try:
            head = self.reader.run(queries.feed_head)
        except Unavailable as exc:
            return web.json_response(
                {"status": "ok", "db": {"readable": False, "reason": str(exc)}}
            )
        return web.json_response({"status": "ok", "db": {"readable": True, "feed_head": head}})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = self.render_metrics().encode()
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def feed(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events of status changes after the client's last seen position."""
        try:
            after = _feed_start(request, self.reader)
        except ValueError as exc:
            return _error(400, str(exc))
        except Unavailable as exc:
            return _unavailable(exc)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # reverse proxies must not hold events back
            }
        )
        await response.prepare(request)
        # Client gone, or projections unreadable: either way the stream ends and the
        # client resumes with Last-Event-ID.
        with contextlib.suppress(ConnectionResetError, Unavailable):
            await self._stream(request, response, after)
        return response

    async def _stream(self, request: web.Request, response: web.StreamResponse, after: int) -> None:
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        while not _disconnected(request):
            rows = self.reader.run(queries.feed_after, after, FEED_BATCH)
            if rows:
                await response.write(b"".join(_sse(row) for row in rows))
                after, last_write = rows[-1]["seq"], loop.time()
                if len(rows) == FEED_BATCH:
                    continue  # catching up: no pause until the backlog is sent
            elif loop.time() - last_write >= self.keepalive:
                # Comments keep idle proxies and load balancers from closing the stream.
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            await asyncio.sleep(self.poll)


def _feed_start(request: web.Request, reader: Reader) -> int:
    """Where the feed resumes: `Last-Event-ID` (sent by reconnecting clients), else `?after=`.

    Without either the feed starts at the beginning, so a new subscriber sees every status
    change once; `after=latest` skips to the changes made from now on.
    """
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if raw == "latest" and "Last-Event-ID" not in request.headers:
        return int(reader.run(queries.feed_head))
    # 18 digits always fit SQLite's signed 64-bit integers; longer is no position we made.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ValueError("Last-Event-ID / after must be a feed position (an integer) or 'latest'")
    reader.connect()  # fail before the stream starts when there is nothing to read
    return int(raw)


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _sse(row: dict[str, Any]) -> bytes:
    data = json.dumps(row, separators=(",", ":"), ensure_ascii=False)  # one line: \n escaped
    return f"id: {row['seq']}\nevent: status\ndata: {data}\n\n".encode()


def read_routes(
    db_path: str,
    *,
    api_token: str | None,
    render_metrics: Callable[[], str],
    feed_poll: float = 0.2,
    keepalive: float = KEEPALIVE,
) -> list[web.RouteDef]:
    """The read API's routes, to add with `app.add_routes(...)`.

    Every route but `/healthz` needs the bearer token when `api_token` is set. HEAD is not
    routed, so the OpenAPI document lists exactly what is served.
    """
    api = ReadApi(Reader(db_path), render_metrics, feed_poll, keepalive)

    def get(path: str, handler: Handler, *, open_: bool = False) -> web.RouteDef:
        guarded = handler if open_ else _guarded(handler, api_token)
        return web.get(path, guarded, allow_head=False)

    return [
        get("/verifications", api.listing),
        get("/verifications/{provider}/{kind}/{id}", api.verification),
        get("/verifications/{provider}/{kind}/{id}/history", api.history),
        get("/feed", api.feed),
        get("/healthz", api.healthz, open_=True),
        get("/metrics", api.metrics),
    ]
