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
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvloop

from ingest import rawlog
from ingest.sealing import MasterKeys
from ingest.settings import IngestSettings
from ingest.writer import run_writer
from projections.locking import DatabaseInUse, Role, claim, tidy
from projections.schema import open_projections
from streams.config import KycflowError
from streams.embedded.processor import run_processor
from streams.erasure import retention
from streams.erasure.retention import Policy
from streams.kafka.config import KafkaSettings, ensure_topics
from streams.service import banner
from streams.service.accesslog import buffered_logging
from streams.service.http import run_http
from streams.service.metrics import SharedMetrics
from streams.stopping import StopFlag
from streams.tuning import tune_gc

log = logging.getLogger("kycflow.serve")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
PR_SET_PDEATHSIG = 1
_UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


@dataclass(frozen=True)
class ServeSettings:
    db: str
    host: str
    port: int
    workers: int
    api_token: str | None
    ingest: IngestSettings
    kafka: KafkaSettings | None = None  # set: ingest to Kafka; `kycflow project` projects
    # Encryption at rest (ingest.sealing): set once the database is ours (streams.masterkeys);
    # `seal` False stores new rows in the clear (KYCFLOW_ENCRYPTION=off) yet reads sealed ones.
    master: MasterKeys | None = field(default=None, repr=False)
    seal: bool = True
    # KYCFLOW_RETENTION / _INTERVAL (streams.erasure.retention): applied by the processor.
    retention: Policy | None = None
    retention_interval: float = 3600.0

    @classmethod
    def from_config(cls, config: dict[str, str]) -> ServeSettings:
        policy, interval = retention.from_config(config)
        return cls(
            db=config.get("KYCFLOW_DB", "./kycflow.db"),
            host=config.get("KYCFLOW_HOST", "127.0.0.1"),
            port=_integer(config, "KYCFLOW_PORT", 8080, upto=65535),
            workers=_integer(config, "KYCFLOW_WORKERS", os.cpu_count() or 1, upto=256),
            api_token=config.get("KYCFLOW_API_TOKEN") or None,
            ingest=IngestSettings.from_config(config),
            kafka=KafkaSettings.from_config(config),
            retention=policy,
            retention_interval=interval,
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


def serve(
    settings: ServeSettings,
    ready: Callable[[str], None] | None = None,
    first_run: Callable[[], ServeSettings] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; KycflowError, before anything starts, when another service
    holds the database or the port. `first_run` (credentials generation) runs once both are
    ours, so a refused start writes nothing; it returns the settings to serve with."""
    # Embedded mode also writes the projections (its processor); Kafka mode only reads
    # them, written by `kycflow project`.
    roles = (Role.SERVE,) if settings.kafka else (Role.SERVE, Role.WRITER)
    with contextlib.ExitStack() as held:
        held.enter_context(_claimed(settings.db, roles))
        guard = held.enter_context(_port_guard(settings.port))
        listeners = _listen(settings.host, settings.port, settings.workers)
        for listener in listeners:
            held.callback(listener.close)  # already closed once the workers hold them
        if first_run is not None:
            settings = first_run()
        scratch = held.enter_context(tempfile.TemporaryDirectory(prefix="kycflow-"))
        open_projections(settings.db).close()  # migrated before any worker serves reads
        children, backends = _start(settings, listeners, os.path.join(scratch, "writer.sock"))
        print(banner.report(settings), file=sys.stderr, flush=True)
        if ready is not None:
            ready(f"http://{settings.host}:{settings.port}")
        code = _supervise(children, backends, guard)
        _tidy(settings)
    return code


def _start(
    settings: ServeSettings, listeners: list[socket.socket], socket_path: str
) -> tuple[list[BaseProcess], int]:
    """Fork the children; returns them and how many are back ends (stopped last)."""
    raw_path = rawlog.raw_log_path(settings.db)
    metrics = SharedMetrics(slots=settings.workers + 1)
    ctx = multiprocessing.get_context("fork")
    children: list[BaseProcess] = []
    if settings.kafka is not None:
        _create_topics(settings.kafka)
    else:  # embedded: one writer owns the raw log, the processor projects it
        log.debug("raw-log writer socket: %s", socket_path)
        children.append(
            ctx.Process(
                target=_writer_main,
                args=(socket_path, raw_path, settings.master if settings.seal else None),
                name="writer",
            )
        )
        children[0].start()
        _wait_for(Path(socket_path))
        children.append(
            ctx.Process(
                target=_processor_main,
                name="processor",
                args=(settings, raw_path, metrics),
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
    return children, backends


# --- one service per database and per port -------------------------------------------------
@contextlib.contextmanager
def _claimed(db: str, roles: tuple[Role, ...]) -> Iterator[None]:
    """The database's roles, held until the service stops (the children share them)."""
    try:
        held = claim(db, *roles)
    except DatabaseInUse as exc:
        raise KycflowError(str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise KycflowError(f"cannot lock the database {Path(db).absolute()}: {reason}") from None
    with held:
        yield


@contextlib.contextmanager
def _port_guard(port: int) -> Iterator[socket.socket]:
    """The port, claimed among kycflow services.

    The HTTP workers listen with SO_REUSEPORT, which would let any process of the same user
    join the port and take a share of its connections: two services would split webhooks
    between two databases. So the port is also claimed by binding the abstract Unix socket
    "kycflow-port-N": the kernel allows one per name in a network namespace (the scope of
    ports too), frees it when the last process holding it exits, and it leaves no file.
    It listens, so a refused service can read the holder's pid (SO_PEERCRED).
    """
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        guard.bind(f"\0kycflow-port-{port}")
    except OSError as exc:
        guard.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        holder = _guard_holder(port)
        raise KycflowError(_port_in_use(port, holder)) from None
    with guard:
        guard.listen(16)
        guard.setblocking(False)
        yield guard


def _port_in_use(port: int, pid: int | None = None) -> str:
    return f"port {port} is in use" + (f" by kycflow pid {pid}" if pid else "")


def _guard_holder(port: int) -> int | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(f"\0kycflow-port-{port}")
        except OSError:
            return None
        credentials = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        return int(_UCRED.unpack(credentials)[0]) or None


def _drain(guard: socket.socket) -> None:
    """Let go of the connections refused services made to read our pid."""
    with contextlib.suppress(BlockingIOError):
        while True:
            guard.accept()[0].close()


def _listen(host: str, port: int, count: int) -> list[socket.socket]:
    """One SO_REUSEPORT listening socket per HTTP worker: the kernel spreads connections
    evenly (with one shared socket, long-lived connections pile onto one worker).

    First a plain bind: it fails if anything holds the port, even a program that set
    SO_REUSEPORT itself, which our sockets would otherwise join.
    """
    listeners: list[socket.socket] = []
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # names: IPv4
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as create_server
            probe.bind((host, port))
        for _ in range(count):
            listeners.append(
                socket.create_server((host, port), family=family, backlog=2048, reuse_port=True)
            )
    except OSError as exc:
        for listener in listeners:
            listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise KycflowError(_port_in_use(port)) from None
        raise KycflowError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listeners


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


def _supervise(children: list[BaseProcess], backends: int, guard: socket.socket) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and all(child.is_alive() for child in children):
        _drain(guard)
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


def _tidy(settings: ServeSettings) -> None:
    """No -wal and -shm left beside the databases (the children's connections, gone with
    them, may not have been closed)."""
    tidy(settings.db)
    if settings.kafka is None:
        tidy(rawlog.raw_log_path(settings.db))


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
    # Stop with the supervisor even if it is killed: orphans would go on serving the port and
    # holding the database, with no one to stop them.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
    tune_gc()


def _writer_main(socket_path: str, raw_path: Path, master: MasterKeys | None) -> None:
    _quiet_interrupts()
    _run(_until_terminated(run_writer(socket_path, raw_path, master=master)))


def _processor_main(settings: ServeSettings, raw_path: Path, metrics: SharedMetrics) -> None:
    _quiet_interrupts()
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    _background()
    recorder = metrics.recorder(0)
    if settings.retention is not None:
        # Retention is background work on the raw log and the projections, as the
        # processor's is: a thread here, at its niceness, rather than one more process.
        retention.start(
            settings.retention,
            settings.retention_interval,
            db_path=settings.db,
            master=settings.master,
            stop=stop,
            reduced=recorder.retention_reduced,
        )
    run_processor(settings.db, raw_path, stop, recorder, master=settings.master)


def _background() -> None:
    """The processor runs on what ingest leaves: during a burst the cores go to the HTTP
    workers and the writer (providers wait on them), and projections catch up after.

    SCHED_IDLE as well as nice 19: a waking HTTP worker or writer preempts a SCHED_IDLE
    task at once, where a nice-19 one may finish its slice first, and each such wait
    delays a whole group commit. Ingest ran 1.1-1.5x faster with it in A/B runs (wrk -c64);
    the processor used the same idle CPU either way, and catches up after the burst.
    """
    os.nice(19)  # also where SCHED_IDLE is refused (and how benchmarks tell the processor)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _http_main(
    listener: socket.socket,
    slot: int,
    socket_path: str,
    raw_path: Path,
    settings: ServeSettings,
    metrics: SharedMetrics,
) -> None:
    _quiet_interrupts()
    with buffered_logging():  # a write per loop iteration, not per access line
        _run(_until_terminated(run_http(listener, slot, socket_path, raw_path, settings, metrics)))


def _run(main: Any) -> None:
    """uvloop: the same asyncio code, a cheaper loop (libuv), for the hot processes."""
    uvloop.run(main)


async def _until_terminated(main: Any) -> None:
    task = asyncio.ensure_future(main)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
