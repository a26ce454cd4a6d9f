"""The access log as an HTTP worker writes it: buffered per loop iteration, same lines."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from streams.service.accesslog import LoopFlushedHandler, SecondCachedFormatter, buffered_logging
from streams.service.protocol import ACCESS, AccessLog

FORMAT = "%(asctime)s %(name)s %(message)s"  # kycflow serve's logging.basicConfig
ASCTIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


class Writes(io.StringIO):
    """stderr stand-in that counts write calls (one per syscall on a real stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class Reference(logging.StreamHandler[Any]):
    """The stdlib handler as it wrote every line before (a subclass: left unswapped)."""


def plain(stream: io.StringIO) -> logging.StreamHandler[Any]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger as `kycflow serve` configures it, with the handlers a test gives."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers, root.level = [], logging.INFO
    try:
        yield root
    finally:
        root.handlers[:], root.level = saved
        ACCESS.setLevel(logging.NOTSET)


def request(method: str = "POST", path: str = "/webhooks/idwise", provider: str = "") -> Any:
    match = {"provider": provider or "idwise"} if path.startswith("/webhooks/") else {}
    return SimpleNamespace(method=method, rel_url=SimpleNamespace(raw_path=path), _match_info=match)


def messages(text: str) -> list[str]:
    """Each line without its time, which must have the stdlib's format."""
    lines = text.splitlines()
    assert all(re.match(ASCTIME, line) for line in lines), lines
    return [re.sub(ASCTIME, "", line, count=1) for line in lines]


def answer(status: int = 202, kind: str = "") -> Any:
    return SimpleNamespace(status=status, kind=kind)


def log_each_kind(access: AccessLog) -> None:
    access.log(request(), answer(), 0.00123)
    access.log(request("GET", "/healthz"), answer(200), 0.0004)
    access.log(request(), answer(431, "LineTooLong"), 0.0052)


def test_lines_are_those_the_stdlib_handler_writes(root: logging.Logger) -> None:
    reference, buffered = io.StringIO(), Writes()
    root.handlers = [plain(buffered), Reference(reference)]
    root.handlers[1].setFormatter(logging.Formatter(FORMAT))
    access = AccessLog(ACCESS, "")

    async def serve() -> None:
        log_each_kind(access)
        await asyncio.sleep(0)

    with buffered_logging():
        assert type(root.handlers[0]) is LoopFlushedHandler
        uvloop.run(serve())
    assert buffered.getvalue() == reference.getvalue()
    assert messages(buffered.getvalue()) == [
        "kycflow.access POST /webhooks/idwise 202 1.2ms idwise",
        "kycflow.access GET /healthz 200 0.4ms",
        "kycflow.access - - 431 5.2ms LineTooLong",
    ]


def test_the_record_names_the_access_log_as_its_caller(root: logging.Logger) -> None:
    stream = io.StringIO()
    root.handlers = [plain(stream)]
    root.handlers[0].setFormatter(logging.Formatter("%(module)s %(funcName)s %(message)s"))
    AccessLog(ACCESS, "").log(request(), answer(), 0.001)
    assert stream.getvalue() == "protocol log POST /webhooks/idwise 202 1.0ms idwise\n"


def test_a_loop_iteration_lines_are_written_at_once_by_its_end(root: logging.Logger) -> None:
    stream = Writes()
    root.handlers = [plain(stream)]
    access = AccessLog(ACCESS, "")

    async def serve() -> tuple[str, str]:
        for _ in range(64):
            access.log(request(), answer(), 0.001)
        during = stream.getvalue()
        await asyncio.sleep(0)  # the next iteration
        return during, stream.getvalue()

    with buffered_logging():
        during, after = uvloop.run(serve())
    assert during == ""
    assert len(after.splitlines()) == 64 and stream.writes == 1


def test_pending_lines_are_written_when_the_worker_stops(root: logging.Logger) -> None:
    stream = io.StringIO()
    root.handlers = [plain(stream)]
    # asyncio's loop, not uvloop: a stopped asyncio loop leaves the callbacks scheduled in
    # its last iteration unrun (uvloop happens to run them), so the flush is left to the end.
    loop = asyncio.new_event_loop()

    def last_request() -> None:
        AccessLog(ACCESS, "").log(request(), answer(), 0.001)
        loop.stop()

    with buffered_logging():
        loop.call_soon(last_request)
        loop.run_forever()
        loop.close()
        assert stream.getvalue() == ""
    assert stream.getvalue().endswith("kycflow.access POST /webhooks/idwise 202 1.0ms idwise\n")


def test_pending_lines_are_written_when_the_worker_fails(root: logging.Logger) -> None:
    stream = io.StringIO()
    root.handlers = [plain(stream)]

    async def serve() -> None:
        AccessLog(ACCESS, "").log(request(), answer(), 0.001)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError), buffered_logging():
        uvloop.run(serve())
    assert "POST /webhooks/idwise 202" in stream.getvalue()


def test_a_warning_and_lines_logged_off_the_loop_are_written_at_once(
    root: logging.Logger,
) -> None:
    stream = io.StringIO()
    root.handlers = [plain(stream)]

    async def serve() -> str:
        AccessLog(ACCESS, "").log(request(), answer(), 0.001)
        logging.getLogger("kycflow.http").error("request failed")
        return stream.getvalue()

    with buffered_logging():
        logging.getLogger("kycflow.serve").info("before the loop")
        assert stream.getvalue().endswith("kycflow.serve before the loop\n")
        during = uvloop.run(serve())
    assert messages(during) == [
        "kycflow.serve before the loop",
        "kycflow.access POST /webhooks/idwise 202 1.0ms idwise",
        "kycflow.http request failed",
    ]


def test_raising_the_access_loggers_level_silences_it(root: logging.Logger) -> None:
    stream = io.StringIO()
    root.handlers = [plain(stream)]
    access = AccessLog(ACCESS, "")
    ACCESS.setLevel(logging.WARNING)

    async def serve() -> None:
        log_each_kind(access)
        await asyncio.sleep(0)

    with buffered_logging():
        uvloop.run(serve())
    assert not access.enabled
    assert stream.getvalue() == ""


def test_other_handlers_are_left_as_they_are(root: logging.Logger, tmp_path: Any) -> None:
    file = logging.FileHandler(tmp_path / "kycflow.log")
    root.handlers = [file]
    with buffered_logging():
        assert root.handlers == [file]
    file.close()


@pytest.mark.parametrize("datefmt", [None, "%H:%M:%S"])
def test_the_time_text_cached_per_second_is_the_stdlib_one(datefmt: str | None) -> None:
    stdlib, cached = logging.Formatter(FORMAT, datefmt), SecondCachedFormatter(FORMAT, datefmt)
    start = time.time()
    for created in [start, start + 0.25, start + 0.999, start + 1.0, start + 3600.5, start]:
        record = logging.makeLogRecord({"msg": "x", "created": created})
        record.msecs = int((created - int(created)) * 1000) + 0.0
        assert cached.format(record) == stdlib.format(record)
