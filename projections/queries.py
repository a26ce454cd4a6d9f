"""Read queries over the projection tables, for the HTTP API and the CLI.

Pure functions of a connection: no writes, no clock, no caching, so the API can share one
read-only connection per process and a test can pass the writer's `Database` directly.
Rows come back as the JSON-safe shapes the API serves: `final` as a bool, `reasons` as a
list, and never the internal `fold_*` columns (the fold's private bookkeeping).
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
    "provider", "kind", "id", "status", "final", "decided_by", "attempt", "provider_status",
    "reasons", "version", "updated_at", "cause_event", "cause_offset", "parent_kind", "parent_id",
)  # fmt: skip
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
        if "reasons" in row:
            row["reasons"] = json.loads(row["reasons"])
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
    """Status changes with a feed position greater than `seq`, oldest first."""
    found = rows(
        db,
        f"SELECT subject, {columns(TRANSITION_FIELDS)} FROM transitions WHERE seq > ? "
        "ORDER BY seq LIMIT ?",
        (seq, max(1, min(FEED_LIMIT, limit))),
    )
    return [_split_subject(row) for row in found]


def feed_head(db: Connection) -> int:
    """The latest feed position (0 when the feed is empty)."""
    row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM transitions").fetchone()
    return int(row[0])


def _split_subject(row: dict[str, Any]) -> dict[str, Any]:
    # Provider and kind never contain "/", so the id is everything after the second one.
    provider, kind, id = row.pop("subject").split("/", 2)
    return {"provider": provider, "kind": kind, "id": id, **row}


def documents_of(db: Connection, provider: str, kyb_id: str) -> list[dict[str, Any]]:
    """The KYB documents whose parent is the given KYB subject, by document id."""
    return rows(
        db,
        f"SELECT {columns(DOCUMENT_FIELDS)} FROM documents WHERE provider = ? AND kyb_id = ? "
        "ORDER BY id",
        (provider, kyb_id),
    )
