"""The audit trail of erasures, retention runs and key rotations, in both modes.

One entry per erasure request, per retention run that reduced something, per key
rotation: when, what, by whom (`cli`, `api:<token fingerprint>`, `retention`), which
subject keys (provider/kind/id), how many deliveries were reduced and data keys destroyed
(or rewrapped). Never a body, a reference or a secret.

- Embedded mode: the `audit` table of the raw log, written in the transaction that does the
  work (`streams.erasure.embedded.write_audit`), so the trail and the work commit together.
- Kafka mode: the `PREFIX.audit` topic (one partition, kept forever), one JSON record per
  entry with the table's columns, produced with acks=all once the work is done. A topic
  write cannot join the work's, so a failed write is `AuditFailed` (the command fails,
  naming the entry) rather than a trail that silently misses the work.

`trail` reads either, oldest first (`kycflow audit`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from streams.config import KycflowError

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,      -- erase | retention | rotate
    by          TEXT NOT NULL,      -- cli, api:<token fingerprint>, retention
    subjects    TEXT NOT NULL,      -- JSON list of subject keys (provider/kind/id)
    deliveries  INTEGER NOT NULL,   -- deliveries reduced
    keys        INTEGER NOT NULL    -- data keys destroyed or rewrapped
);
"""
ACK_TIMEOUT = 30.0  # seconds for the broker to acknowledge an entry
READ_TIMEOUT = 30.0  # seconds to read the topic to its end


class KafkaSettings(Protocol):
    """What the Kafka side needs of `streams.kafka.config.KafkaSettings` (not imported:
    the embedded runtime imports this module, and never the Kafka one)."""

    @property
    def servers(self) -> list[str]: ...

    def topic(self, suffix: str) -> str: ...


@dataclass(frozen=True)
class Entry:
    at: str
    action: str  # erase | retention | rotate
    by: str  # cli, api:<token fingerprint>, retention
    subjects: tuple[str, ...]
    deliveries: int
    keys: int

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "subjects": list(self.subjects)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            str(data["at"]),
            str(data["action"]),
            str(data["by"]),
            tuple(str(s) for s in data["subjects"]),
            int(data["deliveries"]),
            int(data["keys"]),
        )


class AuditFailed(KycflowError):
    """The work is done but its audit entry was not written: the message carries the
    entry, so it can be recorded by hand."""

    def __init__(self, entry: Entry, reason: str) -> None:
        self.entry = entry
        super().__init__(
            f"{entry.action} done, but its audit entry was not written ({reason}): "
            + json.dumps(entry.as_json())
        )


# -- embedded mode ------------------------------------------------------------------------


def insert(cur: sqlite3.Cursor, entry: Entry) -> None:
    """Add `entry` to the raw log's table, in the caller's transaction."""
    cur.execute(
        "INSERT INTO audit (at, action, by, subjects, deliveries, keys) VALUES (?, ?, ?, ?, ?, ?)",
        (
            entry.at,
            entry.action,
            entry.by,
            json.dumps(list(entry.subjects)),
            entry.deliveries,
            entry.keys,
        ),
    )


def from_raw_log(raw_path: Path) -> list[Entry]:
    """The table's entries, oldest first, read-only (a running service keeps writing);
    none when there is no raw log or no erasure has made the table yet."""
    if not raw_path.is_file():
        return []
    uri = f"{raw_path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("PRAGMA busy_timeout=5000")
        try:
            rows = db.execute(
                "SELECT at, action, by, subjects, deliveries, keys FROM audit ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    return [Entry(at, act, by, tuple(json.loads(s)), d, k) for at, act, by, s, d, k in rows]


# -- Kafka mode ---------------------------------------------------------------------------


def produce(producer: Any, settings: KafkaSettings, entry: Entry) -> None:
    """Append `entry` to PREFIX.audit with `producer` (acks=all); AuditFailed unless the
    broker acknowledged it. The topic must exist (`streams.kafka.config.ensure_topics`):
    a broker that creates topics on first use would make one with its own retention."""
    from kafka.errors import KafkaError

    value = json.dumps(entry.as_json(), separators=(",", ":")).encode()
    try:
        producer.send(settings.topic("audit"), value=value).get(timeout=ACK_TIMEOUT)
    except KafkaError as exc:
        raise AuditFailed(entry, f"{settings.topic('audit')}: {exc}") from exc


def produce_pending(settings: KafkaSettings, entries: list[Entry]) -> None:
    """Write entries that failed before, oldest first, removing each once acknowledged."""
    if not entries:
        return
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.servers, client_id="kycflow-audit", acks="all"
    )
    try:
        while entries:
            produce(producer, settings, entries[0])
            entries.pop(0)
    finally:
        producer.close()


def from_topic(settings: KafkaSettings, timeout: float = READ_TIMEOUT) -> list[Entry]:
    """PREFIX.audit from its beginning to its end now, oldest first (none if no topic)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic("audit")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers, client_id="kycflow-audit", enable_auto_commit=False
    )
    try:
        if topic not in consumer.topics():
            return []
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[Entry] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout:g} s")
            for tp, messages in consumer.poll(timeout_ms=200).items():
                found += [
                    Entry.from_json(json.loads(m.value)) for m in messages if m.offset < ends[tp]
                ]
    finally:
        consumer.close()
    return found  # one partition: in the order written
