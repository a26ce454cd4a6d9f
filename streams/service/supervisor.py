"""`kycflow serve`: the processes and how they are wired, in either mode.

    supervisor ── writer      one process owns the raw log; group commit (ingest.writer)
               ├─ processor   tails the raw log into the projections (streams.embedded.processor)
               └─ http x N    aiohttp on one shared listening socket: ingest + read API

Kafka mode runs only the HTTP workers: each appends to the raw topic with its own producer
(ingest.kafka_log), and `kycflow worker` / `kycflow project` do the processor's work.

Why processes: HTTP parsing and authentication are CPU-bound and the GIL caps one process
at ~6-7k durable requests/s (design.md §8); N workers feeding one writer scale with cores.
If any child dies the supervisor stops the rest and exits non-zero, so a process manager
restarts the whole service rather than running it half-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvloop

from ingest import rawlog
from ingest.settings import IngestSettings
from ingest.writer import run_writer
from projections.schema import open_projections
from streams.embedded.processor import run_processor
from streams.kafka.config import KafkaSettings, ensure_topics
from streams.service.http import run_http
from streams.service.metrics import SharedMetrics
from streams.stopping import StopFlag
from streams.tuning import tune_gc

log = logging.getLogger("kycflow.serve")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class ServeSettings:
    db: str
    host: str
    port: int
    workers: int
    api_token: str | None
    ingest: IngestSettings
    kafka: KafkaSettings | None = None  # set: ingest to Kafka; `kycflow project` projects

    @classmethod
    def from_config(cls, config: dict[str, str]) -> ServeSettings:
        return cls(
            db=config.get("KYCFLOW_DB", "./kycflow.db"),
            host=config.get("KYCFLOW_HOST", "127.0.0.1"),
            port=_integer(config, "KYCFLOW_PORT", 8080, upto=65535),
            workers=_integer(config, "KYCFLOW_WORKERS", os.cpu_count() or 1, upto=256),
            api_token=config.get("KYCFLOW_API_TOKEN") or None,
            ingest=IngestSettings.from_config(config),
            kafka=KafkaSettings.from_config(config),
        )

    def refusal(self) -> str | None:
        """Why this configuration must not start, if it must not."""
        if self.host not in LOOPBACK and not self.api_token:
            return (
                f"refusing to listen on {self.host}: the read API exposes verification "
                "status; set KYCFLOW_API_TOKEN, or listen on 127.0.0.1"
            )
        return None


def _integer(config: dict[str, str], name: str, default: int, *, upto: int) -> int:
    raw = config.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= upto:
        raise ValueError(f"{name} must be a whole number from 1 to {upto}, not {raw!r}")
    return int(raw)


def serve(settings: ServeSettings, ready: Callable[[str], None] | None = None) -> int:
    raw_path = rawlog.raw_log_path(settings.db)
    open_projections(settings.db).close()  # migrated before any worker serves reads
    socket_path = os.path.join(tempfile.mkdtemp(prefix="kycflow-"), "writer.sock")
    metrics = SharedMetrics(slots=settings.workers + 1)
    # One listening socket per worker with SO_REUSEPORT: the kernel spreads connections
    # evenly. (With one shared socket, long-lived connections pile onto one worker.)
    listeners = [
        socket.create_server((settings.host, settings.port), backlog=2048, reuse_port=True)
        for _ in range(settings.workers)
    ]
    ctx = multiprocessing.get_context("fork")
    children: list[BaseProcess] = []
    if settings.kafka is not None:
        _create_topics(settings.kafka)
    else:  # embedded: one writer owns the raw log, the processor projects it
        children.append(
            ctx.Process(target=_writer_main, args=(socket_path, raw_path), name="writer")
        )
        children[0].start()
        _wait_for(Path(socket_path))
        children.append(
            ctx.Process(
                target=_processor_main, name="processor", args=(settings.db, raw_path, metrics)
            )
        )
        children[1].start()
    backends = len(children)  # the writer and processor; stopped after the HTTP workers
    children += [
        ctx.Process(
            target=_http_main,
            name=f"http-{slot}",
            args=(listeners[slot - 1], slot, socket_path, raw_path, settings, metrics),
        )
        for slot in range(1, settings.workers + 1)
    ]
    for child in children[backends:]:
        child.start()
    for listener in listeners:
        listener.close()  # the workers hold them now
    address = f"http://{settings.host}:{settings.port}"
    mode = f"Kafka mode, {settings.kafka.bootstrap}" if settings.kafka else "embedded"
    log.info("kycflow listening on %s (%d HTTP workers, %s)", address, settings.workers, mode)
    if ready is not None:
        ready(address)
    return _supervise(children, backends)


def _create_topics(kafka: KafkaSettings) -> None:
    """Create the topics if needed. Best effort: a broker that is down now gets 503s until
    it is back, not a dead serve."""
    try:
        created = ensure_topics(kafka)
    except Exception as exc:
        log.warning("could not check or create the Kafka topics (%s); continuing", exc)
        return
    if created:
        log.info("created Kafka topics: %s", ", ".join(created))


def _supervise(children: list[BaseProcess], backends: int) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and all(child.is_alive() for child in children):
        time.sleep(0.2)
    crashed = [c.name for c in children if not c.is_alive()]
    if crashed and not stopping:
        log.error("process %s stopped unexpectedly; stopping kycflow", ", ".join(crashed))
    # HTTP workers first (no new requests), then the writer (it has answered all it
    # received), then the processor.
    for child in reversed(children[backends:]):
        _stop(child)
    for child in children[:backends]:
        _stop(child)
    return 1 if crashed and not stopping else 0


def _stop(child: BaseProcess, grace: float = 10.0) -> None:
    if child.is_alive() and child.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
    child.join(grace)
    if child.is_alive():
        child.kill()
        child.join()


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the raw-log writer did not start ({path} missing)")
        time.sleep(0.01)


# --- child processes ----------------------------------------------------------------------
def _quiet_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    tune_gc()


def _writer_main(socket_path: str, raw_path: Path) -> None:
    _quiet_interrupts()
    _run(_until_terminated(run_writer(socket_path, raw_path)))


def _processor_main(db: str, raw_path: Path, metrics: SharedMetrics) -> None:
    _quiet_interrupts()
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    # During a burst the cores go to ingest (providers wait on it); projections catch up
    # after. When the machine is idle, niceness costs nothing.
    os.nice(19)
    run_processor(db, raw_path, stop, metrics.recorder(0))


def _http_main(
    listener: socket.socket,
    slot: int,
    socket_path: str,
    raw_path: Path,
    settings: ServeSettings,
    metrics: SharedMetrics,
) -> None:
    _quiet_interrupts()
    _run(_until_terminated(run_http(listener, slot, socket_path, raw_path, settings, metrics)))


def _run(main: Any) -> None:
    """uvloop: the same asyncio code, a cheaper loop (libuv), for the hot processes."""
    uvloop.run(main)


async def _until_terminated(main: Any) -> None:
    task = asyncio.ensure_future(main)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
