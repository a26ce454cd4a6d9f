"""Applies the core's steps to the projection tables, effectively once.

A batch of steps and the checkpoint (the last raw offset applied) are written in one
transaction: after a crash anywhere, either both are there or neither, and the processor
resumes after the checkpoint — no effect lost, none doubled.

Erasure (docs/personal-data.md) is applied here too, so the live processor and replay do
the same: a delivery reduced to nothing leaves no quarantine row; an erasure record drops
the quarantine rows it names and, with scope "all", the subject's transitions and events
from before it; the WAL is then truncated so no old page keeps what was erased.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from sqlite_utils import Database

from statemachines.codec import QUARANTINE_FIELDS, quarantine_record
from statemachines.envelope import RawEnvelope
from statemachines.events import Normalised, Subject, Unrecognised
from statemachines.fold import ERASURE, Annotation, SubjectState, Transition
from statemachines.normalise import normalise
from statemachines.process import Step, advance
from statemachines.reduced import ERASED

CHECKPOINT = "processor"
LOAD_CHUNK = 500  # subjects per state-loading query (SQLite allows 32,766 parameters)


# Built once: json.dumps with non-default options builds an encoder per call (~2x slower).
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json_list(values: Sequence[str]) -> str:
    """Reason lists are usually empty; that case skips the encoder (a hot path in replay)."""
    return _json(list(values)) if values else "[]"


class States(Mapping[str, SubjectState]):
    """Subject states for `step`: a bounded in-memory cache over the verifications table."""

    def __init__(self, db: Database, limit: int = 200_000, *, fresh: bool = False) -> None:
        self.db, self.limit = db, limit
        self.cache: dict[str, SubjectState] = {}
        # A database being built from scratch holds no state the cache lacks: skip lookups
        # until the first eviction, after which the table is the only full record.
        self.complete = fresh
        self.absent: set[str] = set()  # subjects `load` found no row for (this batch)

    def load(self, keys: Iterable[str]) -> None:
        """Read the stored states of a batch's subjects up front: one query per LOAD_CHUNK
        subjects instead of one per subject (most of a busy batch's subjects are new)."""
        if self.complete:
            return
        wanted = [key for key in set(keys) if key not in self.cache]
        conn = self.db.conn
        for start in range(0, len(wanted), LOAD_CHUNK):
            chunk = wanted[start : start + LOAD_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE subject IN ({marks})",
                chunk,
            ).fetchall()
            for row in rows:
                self.cache[row[0]] = state_from_row(row)
        self.absent.update(key for key in wanted if key not in self.cache)

    def get(self, key: str, default: Any = None) -> Any:
        """As Mapping.get, without the KeyError a new subject would cost (the hot path)."""
        state = self.cache.get(key)
        if state is not None:
            return state
        if self.complete or key in self.absent:
            return default
        try:
            return self[key]
        except KeyError:
            return default

    def __getitem__(self, key: str) -> SubjectState:
        state = self.cache.get(key)
        if state is None:
            if self.complete or key in self.absent:
                raise KeyError(key)
            row = self.db.conn.execute(
                f"SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE subject = ?", (key,)
            ).fetchone()
            if row is None:
                raise KeyError(key)
            state = self.cache[key] = state_from_row(row)
        return state

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)

    def remember(self, state: SubjectState) -> None:
        self.cache[state.subject.key] = state

    def trim(self) -> None:
        """Forget cached states once committed: they are in the table; memory stays bounded."""
        self.absent.clear()  # a new subject of the batch has a row now
        if len(self.cache) >= self.limit:
            self.cache.clear()
            self.complete = False


class Applied(NamedTuple):
    transitions: list[Transition]
    quarantined: list[str]  # provider of each quarantined envelope


class ProjectionStore:
    def __init__(self, db: Database, *, fresh: bool = False) -> None:
        self.db = db
        self.states = States(db, fresh=fresh)

    def checkpoint(self) -> int:
        row = self.db.execute(
            'SELECT "offset" FROM checkpoint WHERE name = ?', (CHECKPOINT,)
        ).fetchone()
        return int(row[0]) if row else 0

    def process(self, envelopes: Sequence[RawEnvelope]) -> Applied:
        """Run the core over a batch of log envelopes and apply it, effectively once."""
        return self.process_normalised([(env, normalise(env)) for env in envelopes])

    def process_normalised(self, pairs: Sequence[tuple[RawEnvelope, Normalised]]) -> Applied:
        """As `process`, for envelopes already normalised (by a parallel reader)."""
        self.states.load(e.subject.key for _, e in pairs if not isinstance(e, Unrecognised))
        steps = []
        for env, normalised in pairs:
            result = advance(env, normalised, self.states)
            if result.outcome is not None:
                self.states.remember(result.outcome.state)
            steps.append(result)
        return self.apply(steps, pairs[-1][0].offset) if pairs else Applied([], [])

    def apply(self, steps: Sequence[Step], last_offset: int) -> Applied:
        """Write the effects of `steps` and move the checkpoint to `last_offset`, atomically."""
        rows = _Rows()
        for result in steps:
            rows.add(result)
        conn = self.db.conn
        try:
            with conn:  # one transaction: rows and checkpoint together
                rows.write(conn)
                conn.execute(
                    'INSERT INTO checkpoint (name, "offset") VALUES (?, ?) '
                    'ON CONFLICT (name) DO UPDATE SET "offset" = excluded."offset"',
                    (CHECKPOINT, last_offset),
                )
        except BaseException:
            self.states.cache.clear()  # it holds states of this batch, now rolled back
            self.states.absent.clear()
            self.states.complete = False
            raise
        if rows.erasures:
            forget_old_pages(self.db)
        self.states.trim()
        return Applied(rows.transitions, [row[1] for row in rows.quarantine])


def forget_old_pages(db: Database) -> None:
    """After an erasure: the WAL still holds earlier versions of the pages it changed
    (frames are reused, not zeroed). Copy it into the file and truncate it; readers that
    hold an old snapshot can delay that, and then the next erasure or checkpoint does it."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class _Rows:
    """The row changes one batch of steps makes, table by table."""

    def __init__(self) -> None:
        self.states: dict[str, SubjectState] = {}  # last state per subject in the batch
        self.transitions: list[Transition] = []
        self.events: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[Any, ...]] = []
        self.erasures: list[Annotation] = []
        self.wiped: list[tuple[str, int]] = []  # (subject, erasure's offset), scope "all"

    def add(self, result: Step) -> None:
        env, event, outcome = result
        if isinstance(event, Unrecognised) and event.reason == ERASED:
            return  # nothing is left of it: no row, as in a replay of the reduced log
        if isinstance(event, Unrecognised) or outcome is None:
            record = quarantine_record(env, event if isinstance(event, Unrecognised) else None)
            self.quarantine.append(tuple(record[name] for name in QUARANTINE_FIELDS))
            return
        state, effect = outcome
        self.states[state.subject.key] = state
        if isinstance(effect, Transition):
            self.transitions.append(effect)
        elif effect.kind == ERASURE:
            self.erasures.append(effect)
            if state.erased_before == effect.offset:
                self._wipe(state.subject.key, effect.offset)
        self.events.append(subject_event_row(effect))

    def _wipe(self, key: str, offset: int) -> None:
        """An erasure of everything: the subject's rows from before it go, this batch's
        too (so its versions, which count from 1 again, never meet the old ones)."""
        self.transitions = [t for t in self.transitions if t.subject.key != key]
        self.events = [row for row in self.events if row[1] != key]
        self.wiped.append((key, offset))

    def write(self, conn: Any) -> None:
        # In key order: subject keys are random, and sorted upserts walk the subject index
        # leaf by leaf instead of jumping across it (the rows are the same either way).
        states = sorted(self.states.items())
        conn.executemany(_VERIFICATION_SQL, [verification_row(state) for _, state in states])
        documents = [
            document_row(s) for s in self.states.values() if s.subject.kind == "kyb_document"
        ]
        conn.executemany(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)", documents
        )
        wipe(conn, self.wiped)  # before the inserts: this batch's later rows stay
        conn.executemany(
            f"INSERT INTO transitions ({TRANSITION_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            [transition_row(t) for t in self.transitions],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO subject_events VALUES (?, ?, ?, ?, ?, ?, ?)", self.events
        )
        conn.executemany(
            "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)", self.quarantine
        )
        drop_quarantined(conn, [n for note in self.erasures for n in note.dropped])


def wipe(conn: Any, wiped: Sequence[tuple[str, int]]) -> None:
    """Erasures of everything: each (subject, position)'s transitions and events from
    before the position go (its verifications and documents rows are rewritten from the
    bare state; the reference index follows by trigger)."""
    for table in ("transitions", "subject_events"):
        conn.executemany(f'DELETE FROM {table} WHERE subject = ? AND "offset" < ?', wiped)


def drop_quarantined(conn: Any, dropped: Sequence[int]) -> None:
    """The quarantine rows of deliveries an erasure reduced to nothing."""
    conn.executemany('DELETE FROM quarantine WHERE "offset" = ?', [(n,) for n in dropped])


TRANSITION_COLUMNS = (
    "subject, version, from_status, to_status, trigger, attempt, final, decided_by, "
    'event_type, dedup_key, "offset", received_at, provider_status, reasons'
)
VERIFICATION_COLUMNS = (
    "subject, provider, kind, id, status, final, decided_by, attempt, provider_status, "
    "reasons, version, updated_at, cause_event, cause_offset, parent_kind, parent_id, "
    'fold_winner, fold_attempts, fold_seen, reference, "references", erased_at, '
    "fold_erased_before"
)


def upsert(table: str, columns: str, *, where: str = "") -> str:
    """Insert a row or update it in place, keyed by `subject`; `where`: only when that holds
    (`excluded.` the new row). An update, not INSERT OR REPLACE, so the table's update
    triggers see the row it replaces (the reference index is rewritten only when the
    references change)."""
    names = [name.strip() for name in columns.split(",")]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    guard = f" WHERE {where}" if where else ""
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT (subject) DO UPDATE SET {updates}{guard}"
    )


_VERIFICATION_SQL = upsert("verifications", VERIFICATION_COLUMNS)


def verification_row(state: SubjectState) -> tuple[Any, ...]:
    subject, parent = state.subject, state.parent
    return (
        subject.key,
        subject.provider,
        subject.kind,
        subject.id,
        state.status,
        int(state.final),
        state.decided_by,
        state.attempt,
        state.provider_status,
        _json_list(state.reasons),
        state.version,
        state.updated_at,
        state.cause_event,
        state.cause_offset,
        parent.kind if parent else None,
        parent.id if parent else None,
        _ints(state.winner) if state.winner else None,
        _ints(state.attempt_keys),
        state.seen,
        state.reference,
        _json_list(state.references),
        state.erased_at,
        state.erased_before,
    )


def state_from_row(row: Sequence[Any]) -> SubjectState:
    """Inverse of `verification_row`: the fold's state of a stored subject."""
    provider, kind, sid, status, final, decided_by, attempt, provider_status = row[1:9]
    reasons, version, updated_at, cause_event, cause_offset, parent_kind, parent_id = row[9:16]
    winner, attempts, seen, reference, references, erased_at, erased_before = row[16:23]
    parent = Subject(provider, parent_kind, parent_id) if parent_kind else None
    return SubjectState(
        Subject(provider, kind, sid),
        status,
        bool(final),
        decided_by,
        attempt,
        provider_status,
        tuple(json.loads(reasons)),
        version,
        updated_at,
        cause_event,
        cause_offset,
        parent,
        tuple(int(x) for x in winner.split(",")) if winner else None,  # type: ignore[arg-type]
        tuple(int(x) for x in attempts.split(",")) if attempts else (),
        bytes(seen),
        reference,
        tuple(json.loads(references)),
        erased_at,
        erased_before,
    )


def subject_event_row(effect: Transition | Annotation) -> tuple[Any, ...]:
    """What one delivery did to its subject: a `subject_events` row."""
    if isinstance(effect, Transition):
        kind, reason = "transition", f"{effect.from_status or 'new'} -> {effect.to_status}"
    else:
        kind, reason = effect.kind, effect.reason
    return (
        effect.offset,
        effect.subject.key,
        effect.event_type,
        kind,
        reason,
        effect.version,
        effect.received_at,
    )


def _ints(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


def document_row(state: SubjectState) -> tuple[Any, ...]:
    kyb = state.parent.id if state.parent else None
    return (
        state.subject.key,
        state.subject.provider,
        state.subject.id,
        kyb,
        state.status,
        int(state.final),
        state.version,
        state.updated_at,
    )


def transition_row(t: Transition) -> tuple[Any, ...]:
    return (
        t.subject.key,
        t.version,
        t.from_status,
        t.to_status,
        t.trigger,
        t.attempt,
        int(t.final),
        t.decided_by,
        t.event_type,
        t.dedup_key,
        t.offset,
        t.received_at,
        t.provider_status,
        _json_list(t.reasons),
    )
