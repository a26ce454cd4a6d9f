"""aiohttp's server, hardened for the open internet: deadlines, quiet errors, an access log.

aiohttp's RequestHandler (one per connection) lacks or does otherwise what a webhook endpoint
needs, so this subclass:
- bounds the time to send request headers (aiohttp has no such deadline: a client sending a
  byte a second held a connection for its 3,630 s keep-alive timeout);
- logs failures without anything the client sent (aiohttp logs a malformed request's raw
  bytes at ERROR, bearer tokens and bodies included) and answers them with a JSON reason
  and a fitting status (431 oversized headers, 414 an oversized request line);
- counts open connections for /metrics, and writes the access log.

It relies on attributes of aiohttp's RequestHandler (`_request_count`, `_waiter`,
`_messages`, `_current_request`); tests/e2e/test_ingest_attacks.py fails if an aiohttp
upgrade changes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from ingest.settings import MAX_HEADERS, MAX_REQUEST_LINE, IngestSettings
from statemachines.envelope import PROVIDERS

log = logging.getLogger("kycflow.http")
ACCESS = logging.getLogger("kycflow.access")
_CLIENT_FAULTS = (HttpProcessingError, web.RequestPayloadError, ConnectionError)
_TIMEOUT_BODY = b'{"error": "request headers not received in time"}'
_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
_TIMEOUT += b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (
    len(_TIMEOUT_BODY),
    _TIMEOUT_BODY,
)


class ConnectionMetrics(Protocol):
    def connections(self, delta: int) -> None: ...

    def header_timeout(self) -> None: ...

    def malformed(self) -> None: ...


@dataclass(frozen=True)
class Hooks:
    header_timeout: float
    metrics: ConnectionMetrics
    access: bool


def runner(app: web.Application, settings: IngestSettings, metrics: ConnectionMetrics) -> Runner:
    """An AppRunner whose connections have the deadlines and limits of `settings`."""
    return Runner(
        app,
        Hooks(settings.header_timeout, metrics, settings.access_log),
        handle_signals=False,
        shutdown_timeout=2.0,  # an open /feed stream must not hold a stop for 60 s
        keepalive_timeout=settings.keepalive_timeout,
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=settings.max_header_size,
        max_headers=MAX_HEADERS,
        auto_decompress=False,  # stored bytes are the bytes received; ingest refuses codings
        logger=log,
        access_log_class=AccessLog,
        access_log=ACCESS if settings.access_log else None,
    )


class Runner(web.AppRunner):
    def __init__(self, app: web.Application, hooks: Hooks, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.hooks = hooks

    async def _make_server(self) -> Server:
        plain = await super()._make_server()  # starts the app up
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            hooks=self.hooks,
            **self._kwargs,
        )


class _Server(Server):
    def __init__(self, handler: Any, *, hooks: Hooks, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.hooks = hooks

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, hooks=self.hooks, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.hooks.metrics.connections(+1)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self.hooks.metrics.connections(-1)


class _Handler(RequestHandler):
    """One connection. A header deadline runs from the connection's start, and from the
    first byte of each later request, until that request's headers are parsed."""

    __slots__ = ("arrivals", "head_partial", "head_started", "head_timer", "hooks")

    def __init__(self, manager: Server, *, hooks: Hooks, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.hooks = hooks
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_started = 0.0
        self.head_partial = False  # some bytes of the current head have arrived
        # When each parsed request's head arrived (perf_counter): uvloop's clock, which aiohttp
        # times requests by, ticks in whole milliseconds.
        self.arrivals: deque[float] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a head was parsed (or refused): deadline met
            self._disarm()
            if self._current_request is not None:
                self._fail_body(self._current_request)
            if self.hooks.access:
                self.arrivals.extend([time.perf_counter()] * (self._request_count - parsed))
        elif data and self._between_requests():  # a new head has begun
            self.head_partial = True
            if self.head_timer is None:
                self._arm()

    def _between_requests(self) -> bool:
        """No body is due: the handler waits for a head, or the current request's body is
        complete (its response may still be on its way: a client can start the next head
        before the handler returns to waiting) and no parsed request is queued."""
        if self._waiter is not None:
            return True
        request = self._current_request
        return not self._messages and (request is None or request.content.is_eof())

    def _fail_body(self, request: BaseRequest) -> None:
        """Broken framing mid-body (say LF-only chunks): aiohttp queues the parse error as
        the next request and leaves the current body waiting; fail its read now (400)
        rather than at the read deadline (408)."""
        if self._messages and getattr(self._messages[-1][0], "exc", None) is not None:
            request.content.set_exception(web.RequestPayloadError("framing"))

    def log_access(
        self, request: BaseRequest, response: StreamResponse, time_: float | None
    ) -> None:
        if self.arrivals:
            arrived = self.arrivals.popleft()
            if self.access_logger is not None:
                self.access_logger.log(request, response, time.perf_counter() - arrived)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.head_started = loop.time()
        self.head_timer = loop.call_later(self.hooks.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.head_partial = False

    def _expired(self) -> None:
        self.head_timer = None
        if self.transport is None:
            return
        if self.head_partial:  # a client that sent nothing yet is just closed
            self.hooks.metrics.header_timeout()
            self.transport.write(_TIMEOUT)
            if self.hooks.access:
                elapsed = asyncio.get_running_loop().time() - self.head_started
                ACCESS.info("- - 408 %.1fms header-timeout", elapsed * 1000)
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """aiohttp's, without the client's bytes in the log or the answer."""
        if isinstance(exc, HttpProcessingError):
            self.hooks.metrics.malformed()
            status, reason = self._refusal(exc)
            log.debug("refused a malformed request: %s", type(exc).__name__)
            kind = type(exc).__name__
        else:
            if status >= 500:
                log.error("request failed: %s", describe(exc))
            reason, kind = ("internal error" if status >= 500 else "refused"), ""
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        refusal = Refusal(status, reason, kind)
        refusal.force_close()
        return refusal

    def _refusal(self, exc: HttpProcessingError) -> tuple[int, str]:
        if isinstance(exc, LineTooLong):
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == self.max_line_size and limit != self.max_field_size:
                return 414, f"request line longer than {limit} bytes"
            return 431, f"a header field is longer than {self.max_field_size} bytes"
        if exc.message.startswith("Too many headers"):
            return 431, f"more than {self.max_headers} header fields"
        return 400, "malformed HTTP request"

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp's unexpected errors, by class and code location only (no message)."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            log.debug("connection closed after a client error: %s", type(exc).__name__)
        else:
            log.error("unexpected HTTP error: %s", describe(exc))


class Refusal(web.Response):
    """A JSON refusal of a request that never reached a route; `kind` names the error."""

    def __init__(self, status: int, reason: str, kind: str) -> None:
        body = json.dumps({"error": reason})
        super().__init__(status=status, text=body, content_type="application/json")
        self.kind = kind


def describe(exc: BaseException | object | None) -> str:
    """An exception's class and where it was raised, without its message: messages can
    quote what the client sent."""
    if not isinstance(exc, BaseException):
        return "unknown error"
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames)
    return f"{type(exc).__name__} at {where or '?'}"


class AccessLog(AbstractAccessLogger):
    """One INFO line per request: method, path (no query), status, latency, provider.

    Never headers, bodies or query values. The path is percent-encoded as received and
    shortened, so a hostile path cannot forge or flood log lines.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        millis = time * 1000
        kind = getattr(response, "kind", "")
        if kind:  # never routed: method and path were not parsed
            self._info("- - %d %.1fms %s", response.status, millis, kind)
            return
        path = _printable(request.rel_url.raw_path)
        match = getattr(request, "_match_info", None)
        provider = match.get("provider") if match is not None else None
        if provider in PROVIDERS:
            line = "%s %s %d %.1fms %s"
            self._info(line, request.method, path, response.status, millis, provider)
        else:
            self._info("%s %s %d %.1fms", request.method, path, response.status, millis)

    def _info(self, msg: str, *args: object) -> None:
        """`logger.info` without its stack walk (findCaller): every access line comes from
        `log`, so the record names it as its caller once and for all."""
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            info = logging.INFO
            logger.handle(
                logger.makeRecord(logger.name, info, __file__, _LINE, msg, args, None, "log")
            )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


_LINE = AccessLog.log.__code__.co_firstlineno


def _printable(path: str, limit: int = 200) -> str:
    if not (path.isascii() and path.isprintable()):
        path = path.encode("unicode_escape").decode("ascii")
    return path if len(path) <= limit else path[:limit] + "..."
