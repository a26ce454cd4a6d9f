"""Kafka mode's projections: the worker's output topics applied to the same tables.

Records arrive at least once and in no particular order across topics, so every write is
idempotent and order-tolerant:
- `kycflow.status`: a subject's row is replaced only by a higher `version` (or a later
  erasure of everything: `fold.erased_before`, which also deletes the subject's rows from
  before it, and makes effects from before it that arrive later ignored);
- `kycflow.transitions`: one row per (subject, version) — a repeat is ignored, a later
  event's (after an erasure of everything) replaces it;
- `kycflow.annotations` / transitions: one `subject_events` row per raw position; a
  `duplicate` note never overwrites what the delivery really did (a worker that crashed
  after publishing may refold an event it had already applied and see it as a duplicate);
- `kycflow.quarantine`: one row per raw position, unless an erasure dropped it
  (`dropped_quarantine`), before or after it arrived.
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
    drop_quarantined,
    forget_old_pages,
    subject_event_row,
    transition_row,
    upsert,
    verification_row,
    wipe,
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
from statemachines.fold import ERASURE, Transition

log = logging.getLogger("kycflow.projector")

CHECKPOINT_PREFIX = "kafka:"


class Record(NamedTuple):
    kind: str  # STATUS, TRANSITIONS, ANNOTATIONS or QUARANTINE
    topic: str
    partition: int
    offset: int
    value: bytes


# A status record replaces the row only when it is newer: a higher version, or a later
# erasure of everything (scope "all"), after which the subject's versions count from 1.
_NEWER = (
    "(COALESCE(excluded.fold_erased_before, -1), excluded.version) > "
    "(COALESCE(verifications.fold_erased_before, -1), verifications.version)"
)
_VERIFICATION_SQL = upsert("verifications", VERIFICATION_COLUMNS, where=_NEWER)
# A KYB document's row follows its verifications row, whichever status record won.
_DOCUMENT_SQL = (
    "INSERT OR REPLACE INTO documents SELECT subject, provider, id, parent_id, status, final, "
    "version, updated_at FROM verifications WHERE subject = ?"
)
# An effect from before its subject's latest erasure of everything arrived late: it is gone.
_CURRENT = (
    "WHERE NOT EXISTS (SELECT 1 FROM verifications WHERE subject = ? AND fold_erased_before > ?)"
)
# One row per (subject, version); after an erasure of everything versions count from 1
# again, and the later event's transition (higher offset) replaces an old one still there.
_TRANSITION_SQL = (
    f"INSERT INTO transitions ({TRANSITION_COLUMNS}) SELECT {', '.join('?' * 14)} {_CURRENT} "
    "ON CONFLICT (subject, version) DO UPDATE SET "
    + ", ".join(
        f"{name} = excluded.{name}"
        for name in (column.strip() for column in TRANSITION_COLUMNS.split(","))
        if name not in ("subject", "version")
    )
    + ' WHERE excluded."offset" > transitions."offset"'
)
_EVENT_SQL = (
    f"INSERT INTO subject_events SELECT ?, ?, ?, ?, ?, ?, ? {_CURRENT} "
    'ON CONFLICT ("offset") DO UPDATE '
    "SET subject = excluded.subject, event_type = excluded.event_type, "
    "effect = excluded.effect, reason = excluded.reason, version = excluded.version, "
    "received_at = excluded.received_at "
    "WHERE subject_events.effect = 'duplicate' AND excluded.effect != 'duplicate'"
)
_QUARANTINE_SQL = (
    "INSERT OR IGNORE INTO quarantine SELECT ?, ?, ?, ?, ?, ? "
    'WHERE NOT EXISTS (SELECT 1 FROM dropped_quarantine WHERE "offset" = ?)'
)
_DROPPED_SQL = 'INSERT OR IGNORE INTO dropped_quarantine ("offset") VALUES (?)'


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
        if rows.erased:
            forget_old_pages(self.db)
        return len(records)


class _Rows:
    def __init__(self) -> None:
        self.verifications: list[tuple[Any, ...]] = []
        self.documents: list[tuple[str]] = []
        self.transitions: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[Any, ...]] = []
        self.wiped: list[tuple[str, int]] = []  # (subject, position of its erasure of all)
        self.dropped: list[int] = []  # quarantine positions erasures dropped
        self.erased = False  # an erased subject's row changed: its old pages must go

    def add(self, kind: str, data: Any) -> None:
        if kind == STATUS:
            self._status(data)
        elif kind in (TRANSITIONS, ANNOTATIONS):
            effect = effect_from_dict(data)
            key, offset = effect.subject.key, effect.offset
            if isinstance(effect, Transition):
                self.transitions.append((*transition_row(effect), key, offset))
            elif effect.kind == ERASURE:
                self.dropped.extend(effect.dropped)
                self.erased = True
            self.events.append((*subject_event_row(effect), key, offset))
        elif kind == QUARANTINE:
            row = tuple(data[name] for name in QUARANTINE_FIELDS)
            self.quarantine.append((*row, row[0]))
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def _status(self, data: Any) -> None:
        state = state_from_status_record(data)
        self.verifications.append(verification_row(state))
        if state.subject.kind == "kyb_document":
            self.documents.append((state.subject.key,))
        if state.erased_before is not None:  # idempotent: repeated for every later record
            self.wiped.append((state.subject.key, state.erased_before))
        self.erased = self.erased or state.erased_at is not None

    def write(self, conn: Any) -> None:
        # Within a batch, a subject's newer status may precede an older one: the
        # version guard makes the order irrelevant.
        conn.executemany(_VERIFICATION_SQL, self.verifications)
        conn.executemany(_DOCUMENT_SQL, self.documents)
        wipe(conn, self.wiped)
        conn.executemany(_TRANSITION_SQL, self.transitions)
        conn.executemany(_EVENT_SQL, self.events)
        conn.executemany(_DROPPED_SQL, [(n,) for n in self.dropped])
        conn.executemany(_QUARANTINE_SQL, self.quarantine)
        drop_quarantined(conn, self.dropped)
