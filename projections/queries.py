"""Read queries over the projection tables, for the HTTP API and the CLI.

Pure functions of a connection: no writes, no clock, no caching, so the API can share one
read-only connection per process and a test can pass the writer's `Database` directly.
Rows come back as the JSON-safe shapes the API serves: `final` as a bool, `reasons` and
`references` as lists, and never the internal `fold_*` columns (the fold's private
bookkeeping).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

Connection = sqlite3.Connection | Database

FEED_LIMIT = 500  # rows per feed read at most
VERIFICATION_FIELDS = (
    "provider", "kind", "id", "reference", "references", "status", "final", "decided_by",
    "attempt", "provider_status", "reasons", "version", "updated_at", "cause_event",
    "cause_offset", "parent_kind", "parent_id", "erased_at",
)  # fmt: skip
JSON_FIELDS = ("reasons", "references")  # lists, stored as JSON text
# The primary reference is in `verifications`, the others in `verification_references`;
# both indexed. Takes the reference twice.
SUBJECTS_WITH_REFERENCE = (
    "SELECT subject FROM verifications WHERE reference = ? "
    "UNION SELECT subject FROM verification_references WHERE reference = ?"
)
TRANSITION_FIELDS = (
    "seq", "version", "from_status", "to_status", "trigger", "attempt", "final", "decided_by",
    "event_type", "dedup_key", "offset", "received_at", "provider_status", "reasons",
)  # fmt: skip
EVENT_FIELDS = ("offset", "event_type", "effect", "reason", "version", "received_at")
DOCUMENT_FIELDS = ("provider", "id", "kyb_id", "status", "final", "version", "updated_at")


def columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in fields)  # "offset" is an SQL keyword


def rows(db: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts whatever the connection's row factory, with JSON columns decoded."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    found = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    for row in found:
        if "final" in row:
            row["final"] = bool(row["final"])
        for name in JSON_FIELDS:
            if name in row:
                row[name] = json.loads(row[name])
    return found


@contextmanager
def _snapshot(db: Connection) -> Iterator[None]:
    """One read transaction, so the parts of a multi-query answer come from one commit."""
    db.execute("SAVEPOINT kycflow_read")  # nests inside a caller's transaction too
    try:
        yield
    finally:
        db.execute("RELEASE kycflow_read")


def subject_key(provider: str, kind: str, id: str) -> str:
    """The table key, as `statemachines.events.Subject.key` builds it."""
    return f"{provider}/{kind}/{id}"


def verification(db: Connection, provider: str, kind: str, id: str) -> dict[str, Any] | None:
    """The subject's current projection (`SubjectState.public()`), or None when unknown."""
    found = rows(
        db,
        f"SELECT {columns(VERIFICATION_FIELDS)} FROM verifications WHERE subject = ?",
        (subject_key(provider, kind, id),),
    )
    return found[0] if found else None


def history(db: Connection, provider: str, kind: str, id: str) -> dict[str, Any] | None:
    """The projection, its status transitions in feed order and every delivery that reached it.

    `events` includes the deliveries that changed nothing (duplicate, late, history …) with
    the reason, which is what makes every non-change explainable (design.md §5.4).
    """
    key = subject_key(provider, kind, id)
    with _snapshot(db):
        current = verification(db, provider, kind, id)
        if current is None:
            return None
        transitions = rows(
            db,
            f"SELECT {columns(TRANSITION_FIELDS)} FROM transitions WHERE subject = ? ORDER BY seq",
            (key,),
        )
        events = rows(
            db,
            f"SELECT {columns(EVENT_FIELDS)} FROM subject_events WHERE subject = ? "
            'ORDER BY "offset"',
            (key,),
        )
    return {"verification": current, "transitions": transitions, "events": events}


def feed_after(db: Connection, seq: int, limit: int = 500) -> list[dict[str, Any]]:
    """Status changes with a feed position greater than `seq`, oldest first, each with its
    subject's `reference` and `erased_at` as now known (the transitions table does not
    store them; in Kafka mode they are null until the subject's status record is
    projected)."""
    fields = ", ".join(f't."{name}"' for name in TRANSITION_FIELDS)
    found = rows(
        db,
        f"SELECT t.subject, v.reference, v.erased_at, {fields} FROM transitions AS t "
        "LEFT JOIN verifications AS v ON v.subject = t.subject WHERE t.seq > ? "
        "ORDER BY t.seq LIMIT ?",
        (seq, max(1, min(FEED_LIMIT, limit))),
    )
    return [_split_subject(row) for row in found]


def feed_head(db: Connection) -> int:
    """The latest feed position (0 when the feed is empty)."""
    row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM transitions").fetchone()
    return int(row[0])


def _parts(key: str) -> tuple[str, str, str]:
    # Provider and kind never contain "/", so the id is everything after the second one.
    provider, kind, id = key.split("/", 2)
    return provider, kind, id


def _split_subject(row: dict[str, Any]) -> dict[str, Any]:
    provider, kind, id = _parts(row.pop("subject"))
    return {"provider": provider, "kind": kind, "id": id, **row}


def with_reference(db: Connection, reference: str) -> list[tuple[str, str, str]]:
    """(provider, kind, id) of every subject whose reference, or one of whose other
    references, is `reference`, by subject key."""
    found = db.execute(f"{SUBJECTS_WITH_REFERENCE} ORDER BY subject", (reference,) * 2)
    return [_parts(key) for (key,) in found.fetchall()]


def documents_of(db: Connection, provider: str, kyb_id: str) -> list[dict[str, Any]]:
    """The KYB documents whose parent is the given KYB subject, by document id."""
    return rows(
        db,
        f"SELECT {columns(DOCUMENT_FIELDS)} FROM documents WHERE provider = ? AND kyb_id = ? "
        "ORDER BY id",
        (provider, kyb_id),
    )
