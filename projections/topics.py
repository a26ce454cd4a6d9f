"""Kafka mode's projections: the worker's output topics applied to the same tables.

Records arrive at least once and in no particular order across topics, so every write is
idempotent and order-tolerant:
- `kycflow.status`: a subject's row is replaced only by a higher `version`;
- `kycflow.transitions`: one row per (subject, version) — a repeat is ignored;
- `kycflow.annotations` / transitions: one `subject_events` row per raw position; a
  `duplicate` note never overwrites what the delivery really did (a worker that crashed
  after publishing may refold an event it had already applied and see it as a duplicate);
- `kycflow.quarantine`: one row per raw position.
The topic offsets are stored in `checkpoint` in the same transaction as the rows, so a
crash replays at most one uncommitted batch, which the rules above absorb.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import pydantic_core
from sqlite_utils import Database

from projections.store import (
    TRANSITION_COLUMNS,
    VERIFICATION_COLUMNS,
    document_row,
    subject_event_row,
    transition_row,
    upsert,
    verification_row,
)
from statemachines.codec import (
    ANNOTATIONS,
    QUARANTINE,
    QUARANTINE_FIELDS,
    STATUS,
    TRANSITIONS,
    effect_from_dict,
    state_from_status_record,
)
from statemachines.fold import Transition

log = logging.getLogger("kycflow.projector")

CHECKPOINT_PREFIX = "kafka:"


class Record(NamedTuple):
    kind: str  # STATUS, TRANSITIONS, ANNOTATIONS or QUARANTINE
    topic: str
    partition: int
    offset: int
    value: bytes


DOCUMENT_COLUMNS = "subject, provider, id, kyb_id, status, final, version, updated_at"
_VERIFICATION_SQL = upsert("verifications", VERIFICATION_COLUMNS, newer=True)
_DOCUMENT_SQL = upsert("documents", DOCUMENT_COLUMNS, newer=True)
_TRANSITION_SQL = (
    f"INSERT OR IGNORE INTO transitions ({TRANSITION_COLUMNS}) VALUES ({', '.join('?' * 14)})"
)
_EVENT_SQL = (
    'INSERT INTO subject_events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("offset") DO UPDATE '
    "SET subject = excluded.subject, event_type = excluded.event_type, "
    "effect = excluded.effect, reason = excluded.reason, version = excluded.version, "
    "received_at = excluded.received_at "
    "WHERE subject_events.effect = 'duplicate' AND excluded.effect != 'duplicate'"
)
_QUARANTINE_SQL = "INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)"


class TopicProjection:
    """Applies output-topic records to the projection tables, with their offsets."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.malformed = 0

    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as last committed."""
        rows = self.db.execute(
            'SELECT name, "offset" FROM checkpoint WHERE name LIKE ?', (CHECKPOINT_PREFIX + "%",)
        ).fetchall()
        result = {}
        for name, offset in rows:
            topic, _, partition = name[len(CHECKPOINT_PREFIX) :].rpartition(":")
            result[(topic, int(partition))] = int(offset)
        return result

    def apply(self, records: Sequence[Record]) -> int:
        """Write a batch of records and the offsets after them in one transaction."""
        rows = _Rows()
        ends: dict[tuple[str, int], int] = {}
        for record in records:
            ends[(record.topic, record.partition)] = record.offset + 1
            try:
                rows.add(record.kind, pydantic_core.from_json(record.value))
            except (ValueError, KeyError, TypeError) as exc:
                # Our worker never writes these; a foreign producer might. Skipped loudly.
                self.malformed += 1
                log.error(
                    "skipping malformed %s record at %s[%d]@%d: %s",
                    record.kind, record.topic, record.partition, record.offset, exc,
                )  # fmt: skip
        with self.db.conn as conn:
            rows.write(conn)
            conn.executemany(
                'INSERT INTO checkpoint (name, "offset") VALUES (?, ?) '
                'ON CONFLICT (name) DO UPDATE SET "offset" = excluded."offset"',
                [(f"{CHECKPOINT_PREFIX}{t}:{p}", offset) for (t, p), offset in ends.items()],
            )
        return len(records)


class _Rows:
    def __init__(self) -> None:
        self.verifications: list[tuple[Any, ...]] = []
        self.documents: list[tuple[Any, ...]] = []
        self.transitions: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[Any, ...]] = []

    def add(self, kind: str, data: Any) -> None:
        if kind == STATUS:
            state = state_from_status_record(data)
            self.verifications.append(verification_row(state))
            if state.subject.kind == "kyb_document":
                self.documents.append(document_row(state))
        elif kind in (TRANSITIONS, ANNOTATIONS):
            effect = effect_from_dict(data)
            if isinstance(effect, Transition):
                self.transitions.append(transition_row(effect))
            self.events.append(subject_event_row(effect))
        elif kind == QUARANTINE:
            self.quarantine.append(tuple(data[name] for name in QUARANTINE_FIELDS))
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def write(self, conn: Any) -> None:
        # Within a batch, a subject's newer status may precede an older one: the
        # version guard makes the order irrelevant.
        conn.executemany(_VERIFICATION_SQL, self.verifications)
        conn.executemany(_DOCUMENT_SQL, self.documents)
        conn.executemany(_TRANSITION_SQL, self.transitions)
        conn.executemany(_EVENT_SQL, self.events)
        conn.executemany(_QUARANTINE_SQL, self.quarantine)
