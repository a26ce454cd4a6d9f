"""One HTTP worker of `kycflow serve`: ingest, the read API and OpenAPI on one aiohttp app.

Every worker serves its own `SO_REUSEPORT` listening socket; in embedded mode it appends
through the writer process, in Kafka mode straight to the raw topic with its own producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ingest import rawlog
from ingest.app import ingest_routes
from ingest.kafka_log import KafkaAppender
from ingest.settings import record_limit
from ingest.writer import WriterClient
from projections.api import read_routes
from streams.console import setup_console
from streams.erasure.api import erase_routes
from streams.service.metrics import SharedMetrics
from streams.service.openapi import openapi_route
from streams.service.protocol import runner as make_runner
from streams.service.unrouted import json_refusals

if TYPE_CHECKING:
    from streams.service.supervisor import ServeSettings

_SECOND: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def now_iso() -> str:
    """The ingest clock as `received_at` text; the date part is formatted once a second."""
    now = time.time()
    second = int(now)
    if second != _SECOND[0]:
        _SECOND[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_SECOND[1]}.{int((now - second) * 1_000_000):06d}Z"


async def run_http(
    listener: socket.socket,
    slot: int,
    socket_path: str,
    raw_path: Path,
    settings: ServeSettings,
    metrics: SharedMetrics,
) -> None:
    kafka = settings.kafka
    client = (
        WriterClient(socket_path, sealed=settings.seal and settings.master is not None)
        if kafka is None
        else KafkaAppender(
            kafka.servers,
            kafka.topic("raw"),
            linger_ms=kafka.linger_ms,
            timeout=kafka.produce_timeout,
            max_record=record_limit(settings.ingest.max_body),
            master=settings.master if settings.seal else None,
            keys_topic=kafka.topic("keys"),
        )
    )
    recorder = metrics.recorder(slot)
    app = web.Application(client_max_size=settings.ingest.max_body, middlewares=[json_refusals])
    app.add_routes(ingest_routes(settings.ingest, client, now_iso, recorder))
    gauges = _gauges(settings.db, raw_path) if settings.kafka is None else dict
    app.add_routes(
        read_routes(
            settings.db, api_token=settings.api_token, render_metrics=lambda: metrics.render(gauges)
        )
    )
    app.add_routes(
        erase_routes(settings.db, api_token=settings.api_token, master=settings.master, kafka=kafka)
    )
    app.add_routes([openapi_route()])
    # The operator console (/ui/): raw bodies as `kycflow inspect` reads them in each mode.
    raw = rawlog.reader(settings.db, settings.master)
    if kafka is not None:
        from streams.kafka.replay import fetch_positions

        raw = functools.partial(fetch_positions, kafka, master=settings.master)
    setup_console(
        app,
        settings.db,
        api_token=settings.api_token,
        raw=raw,
        gauges=gauges,
        appender=client,
        clock=now_iso,
    )
    runner = make_runner(app, settings.ingest, recorder)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await client.close()


def _gauges(db: str, raw_path: Path) -> Callable[[], dict[str, float]]:
    """Processor lag, read at scrape time from the two databases."""

    def read() -> dict[str, float]:
        try:
            with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
                last = rawlog.last_offset(raw)
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as proj:
                row = proj.execute('SELECT "offset" FROM checkpoint').fetchone()
        except sqlite3.Error:
            return {}
        applied = int(row[0]) if row else 0
        return {
            "kycflow_raw_log_last_offset": last,
            "kycflow_processor_offset": applied,
            "kycflow_processor_lag_events": last - applied,
        }

    return read
