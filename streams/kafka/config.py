"""Kafka mode's settings and topics, shared by `serve`, `worker`, `project`, `tail`, `replay`.

All come from the same environment (design.md §6); `KYCFLOW_KAFKA_BOOTSTRAP` switches
Kafka mode on. Topics are created with kafka-python's admin client, with the configs
their roles need: the raw topic is the source of truth (kept forever by default), the
status topic is compacted (latest status per subject), as are the data keys and reduced
events of encryption at rest (`ingest.kafka_keys`); the others are logs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ingest.settings import max_body, record_limit

log = logging.getLogger("kycflow.kafka")
N = TypeVar("N", int, float)

# name -> (what it is, default); the README's configuration table lists the same.
SETTINGS = {
    "KYCFLOW_KAFKA_BOOTSTRAP": ("host:port[,host:port] of the brokers; set -> Kafka mode", ""),
    "KYCFLOW_KAFKA_TOPIC_PREFIX": ("topic names are PREFIX.raw, PREFIX.status, …", "kycflow"),
    "KYCFLOW_KAFKA_GROUP": ("consumer group of the workers (the Faust app id)", "kycflow"),
    "KYCFLOW_KAFKA_PARTITIONS": ("partitions of new topics: the most workers that help", "8"),
    "KYCFLOW_KAFKA_REPLICATION": ("replication factor of new topics", "1"),
    "KYCFLOW_KAFKA_RAW_RETENTION_MS": ("retention of the raw topic; -1 keeps it forever", "-1"),
    "KYCFLOW_KAFKA_LINGER_MS": ("ingest producer linger: batching vs. latency", "1"),
    "KYCFLOW_KAFKA_PRODUCE_TIMEOUT": ("seconds ingest waits for the broker before a 503", "5"),
    "KYCFLOW_KAFKA_SESSION_TIMEOUT": ("consumer session timeout, seconds", "10"),
    "KYCFLOW_KAFKA_REBALANCE_TIMEOUT": ("consumer rebalance timeout, seconds", "30"),
    "KYCFLOW_WORKER_BATCH": ("most raw webhooks a worker folds per batch", "500"),
    "KYCFLOW_KAFKA_STALL_TIMEOUT": (
        "seconds a partition with records to read may make no progress before a worker or "
        "projector re-seeks it; after as long again it exits non-zero",
        "60",
    ),
    "KYCFLOW_WORKER_METRICS_PORT": ("a worker's /metrics and /healthz port; unset: off", ""),
    "KYCFLOW_PROJECTOR_METRICS_PORT": ("the projector's /metrics and /healthz port", ""),
    "KYCFLOW_KAFKA_METRICS_HOST": (
        "address the worker and projector /metrics servers listen on",
        "127.0.0.1",
    ),
}

SUFFIXES = (
    "raw", "status", "transitions", "annotations", "quarantine", "keys", "reduced", "audit"
)  # fmt: skip


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    prefix: str = "kycflow"
    group: str = "kycflow"
    partitions: int = 8
    replication: int = 1
    raw_retention_ms: int = -1
    linger_ms: int = 1
    produce_timeout: float = 5.0
    session_timeout: float = 10.0
    rebalance_timeout: float = 30.0
    batch: int = 500
    stall_timeout: float = 60.0
    worker_metrics_port: int | None = None
    projector_metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    raw_record_limit: int = record_limit(1024 * 1024)  # the largest record ingest may append

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> KafkaSettings | None:
        """None when Kafka mode is off; ValueError naming the variable when one is bad."""
        bootstrap = config.get("KYCFLOW_KAFKA_BOOTSTRAP", "").strip()
        if not bootstrap:
            return None

        def get(name: str) -> str:
            return config.get(name, "").strip() or SETTINGS[name][1]

        return cls(
            bootstrap=bootstrap,
            prefix=get("KYCFLOW_KAFKA_TOPIC_PREFIX"),
            group=get("KYCFLOW_KAFKA_GROUP"),
            partitions=_number(get, "KYCFLOW_KAFKA_PARTITIONS", int, 1, 10_000),
            replication=_number(get, "KYCFLOW_KAFKA_REPLICATION", int, 1, 100),
            raw_retention_ms=_number(get, "KYCFLOW_KAFKA_RAW_RETENTION_MS", int, -1, 2**62),
            linger_ms=_number(get, "KYCFLOW_KAFKA_LINGER_MS", int, 0, 10_000),
            produce_timeout=_number(get, "KYCFLOW_KAFKA_PRODUCE_TIMEOUT", float, 0.1, 300.0),
            session_timeout=_number(get, "KYCFLOW_KAFKA_SESSION_TIMEOUT", float, 1.0, 3600.0),
            rebalance_timeout=_number(get, "KYCFLOW_KAFKA_REBALANCE_TIMEOUT", float, 1.0, 3600.0),
            batch=_number(get, "KYCFLOW_WORKER_BATCH", int, 1, 100_000),
            stall_timeout=_number(get, "KYCFLOW_KAFKA_STALL_TIMEOUT", float, 1.0, 86_400.0),
            worker_metrics_port=_port(get, "KYCFLOW_WORKER_METRICS_PORT"),
            projector_metrics_port=_port(get, "KYCFLOW_PROJECTOR_METRICS_PORT"),
            metrics_host=get("KYCFLOW_KAFKA_METRICS_HOST"),
            raw_record_limit=record_limit(max_body(config)),
        )

    def topic(self, suffix: str) -> str:
        assert suffix in SUFFIXES, suffix
        return f"{self.prefix}.{suffix}"

    @property
    def servers(self) -> list[str]:
        return [server.strip() for server in self.bootstrap.split(",") if server.strip()]


def _number(get: Callable[[str], str], name: str, kind: Callable[[str], N], low: N, high: N) -> N:
    raw = get(name)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {raw!r}")
    return value


def _port(get: Callable[[str], str], name: str) -> int | None:
    """None (off) when unset; 0 asks the system for a free port (the log says which)."""
    return _number(get, name, int, 0, 65_535) if get(name) else None


def topic_configs(settings: KafkaSettings) -> dict[str, dict[str, str]]:
    """Each topic's configs, by name."""
    logs = {"cleanup.policy": "delete", "retention.ms": "-1"}
    return {
        settings.topic("raw"): {
            "cleanup.policy": "delete",
            "retention.ms": str(settings.raw_retention_ms),
            # Every webhook ingest accepts must fit (a broker's default is ~1 MB, less
            # than a 1 MiB body once base64-encoded in its envelope).
            "max.message.bytes": str(settings.raw_record_limit),
        },
        # Latest status per subject; subscribers that start late read only what matters.
        settings.topic("status"): {"cleanup.policy": "compact"},
        settings.topic("transitions"): logs,
        settings.topic("annotations"): logs,
        settings.topic("quarantine"): logs,
        # Encryption at rest (ingest.kafka_keys): the data keys, latest per key id, and an
        # erasure's tombstones; the events kept of deliveries whose keys are gone.
        settings.topic("keys"): {"cleanup.policy": "compact"},
        settings.topic("reduced"): {"cleanup.policy": "compact"},
        # The audit trail of erasures and retention runs (streams.erasure.audit): kept.
        settings.topic("audit"): logs,
    }


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    """The partitions each topic is created with, by name. One of data keys: ingest sends a
    key record with most deliveries, and the broker's work per produce grows with the
    partitions it touches; every reader reads the whole topic anyway. One of the audit
    trail: its entries in order."""
    single = {settings.topic("keys"), settings.topic("audit")}
    return {name: 1 if name in single else settings.partitions for name in topic_configs(settings)}


def ensure_topics(settings: KafkaSettings, timeout: float = 10.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=settings.servers,
        client_id="kycflow-admin",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        existing = set(admin.list_topics())
        partitions = topic_partitions(settings)
        wanted = [
            NewTopic(name, partitions[name], settings.replication, topic_configs=configs)
            for name, configs in topic_configs(settings).items()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                admin.create_topics(wanted)
            log.info("created topics %s", ", ".join(t.name for t in wanted))
        return [t.name for t in wanted]
    finally:
        admin.close()


def partitions_on_broker(settings: KafkaSettings, timeout: float = 10.0) -> dict[str, int]:
    """How many partitions each of kycflow's topics has on the broker, by name (a topic
    made before with other settings keeps its own count); those it does not report are
    left out."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=settings.servers,
        client_id="kycflow-admin",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        described = admin.describe_topics(list(topic_configs(settings)))
    finally:
        admin.close()
    return {
        str(topic["name"]): len(topic["partitions"])
        for topic in described
        if topic.get("error_code", 0) == 0 and topic.get("partitions")
    }
