"""The HTTP workers' log output: one write per event-loop iteration, not one per line.

Under load a worker logs an access line per request; the stdlib StreamHandler writes and
flushes each (a write syscall per line) and formats its time with strftime each time. In
the HTTP worker processes `buffered_logging` swaps the plain stderr StreamHandler that
`kycflow serve` configures (logging.basicConfig) for a `LoopFlushedHandler` on the same
stream, formatter and level, whose time text is formatted once a second. Records still
go through the loggers, so levels, filters and other handlers apply as before; only
where and when a line is written changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TextIO

_NEVER = (-1, None, "")


class LoopFlushedHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler whose lines logged on an event loop's thread are written together
    when the loop iteration they were logged in ends (loop.call_soon): 64 requests served
    in one iteration cost one write, not 64.

    A crash that skips `flush` (SIGKILL, a segfault) loses at most the lines of the
    current loop iteration. Lines logged without a running loop (other threads, before
    or after the loop) and WARNING or above are written at once, after any pending ones.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record) + self.terminator)
        except Exception:  # as StreamHandler: report, never raise into the caller
            self.handleError(record)
            return
        loop = asyncio._get_running_loop()  # None off the loop's thread: no call_soon there
        if loop is None or record.levelno >= logging.WARNING:
            self._write()
        elif not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            self._write()

    def _write(self) -> None:
        self.scheduled = False
        if self.pending:
            text = "".join(self.pending)
            self.pending.clear()
            self.stream.write(text)
        super().flush()


class SecondCachedFormatter(logging.Formatter):
    """logging.Formatter with the same output, whose time text (strftime) is made once
    per second rather than once per record; the milliseconds are added per record."""

    _cached: tuple[int, str | None, str] = _NEVER  # (second, datefmt, strftime text)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, fmt, text = self._cached
        if second != int(record.created) or fmt != datefmt:
            pattern = datefmt or self.default_time_format
            text = time.strftime(pattern, self.converter(record.created))
            self._cached = (int(record.created), datefmt, text)  # one assignment: thread-safe
        if datefmt or not self.default_msec_format:
            return text
        return self.default_msec_format % (text, record.msecs)


@contextlib.contextmanager
def buffered_logging() -> Iterator[None]:
    """For an HTTP worker's lifetime: the root logger's plain stream handlers write once
    per loop iteration; everything still pending is written on the way out (a child
    process ends with os._exit, so logging's own atexit flush never runs there)."""
    root = logging.getLogger()
    installed = []
    for index, plain in enumerate(root.handlers):
        if type(plain) is logging.StreamHandler:  # not a subclass: a file, someone's own
            root.handlers[index] = _replacement(plain)
            installed.append(root.handlers[index])
    try:
        yield
    finally:
        for handler in installed:
            handler.flush()


def _replacement(plain: logging.StreamHandler[TextIO]) -> LoopFlushedHandler:
    handler = LoopFlushedHandler(plain.stream)
    handler.setLevel(plain.level)
    handler.filters = list(plain.filters)
    handler.setFormatter(_cached_time(plain.formatter))
    return handler


def _cached_time(formatter: logging.Formatter | None) -> logging.Formatter | None:
    """The same formatter with its time text cached, if it is a plain logging.Formatter
    (someone's own Formatter subclass is kept as it is)."""
    if type(formatter) is not logging.Formatter:
        return formatter
    cached = SecondCachedFormatter.__new__(SecondCachedFormatter)
    cached.__dict__.update(vars(formatter))  # fmt, style, datefmt, defaults, converter...
    return cached
