"""Read queries over the projection tables, for the HTTP API and the CLI.

Pure functions of a connection: no writes, no clock, no caching, so the API can share one
read-only connection per process and a test can pass the writer's `Database` directly.
Rows come back as the JSON-safe shapes the API serves: `final` as a bool, `reasons` as a
list, and never the internal `fold_*` columns (the fold's private bookkeeping).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

Connection = sqlite3.Connection | Database

MAX_LIMIT = 500
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


def _columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in fields)  # "offset" is an SQL keyword


def _rows(db: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows as dicts whatever the connection's row factory, with JSON columns decoded."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    for row in rows:
        if "final" in row:
            row["final"] = bool(row["final"])
        if "reasons" in row:
            row["reasons"] = json.loads(row["reasons"])
    return rows


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
    rows = _rows(
        db,
        f"SELECT {_columns(VERIFICATION_FIELDS)} FROM verifications WHERE subject = ?",
        (subject_key(provider, kind, id),),
    )
    return rows[0] if rows else None


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
        transitions = _rows(
            db,
            f"SELECT {_columns(TRANSITION_FIELDS)} FROM transitions WHERE subject = ? ORDER BY seq",
            (key,),
        )
        events = _rows(
            db,
            f"SELECT {_columns(EVENT_FIELDS)} FROM subject_events WHERE subject = ? "
            'ORDER BY "offset"',
            (key,),
        )
    return {"verification": current, "transitions": transitions, "events": events}


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The subject key inside a cursor; ValueError for anything `encode_cursor` did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error):
        raise ValueError("invalid cursor") from None
    # urlsafe_b64decode skips stray characters; a round trip rejects every non-canonical form.
    if encode_cursor(key) != cursor or key.count("/") < 2:
        raise ValueError("invalid cursor")
    return key


def clamp_limit(limit: int) -> int:
    return max(1, min(MAX_LIMIT, limit))


def listing(
    db: Connection,
    provider: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of verifications in subject-key order, filtered by the given fields.

    Keyset pagination: the cursor is the last key of the previous page, so pages stay
    consistent while the processor writes (no row is skipped or repeated because rows
    were added before it, unlike OFFSET). `next_cursor` is None on the last page.
    """
    clauses, params = [], []
    for column, value in (("provider", provider), ("kind", kind), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if cursor is not None:
        clauses.append("subject > ?")
        params.append(decode_cursor(cursor))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    size = clamp_limit(limit)
    rows = _rows(
        db,
        f"SELECT subject, {_columns(VERIFICATION_FIELDS)} FROM verifications {where} "
        "ORDER BY subject LIMIT ?",
        (*params, size + 1),  # one extra row tells whether another page exists
    )
    more = len(rows) > size
    items = rows[:size]
    next_cursor = encode_cursor(items[-1]["subject"]) if more else None
    for item in items:
        del item["subject"]
    return {"items": items, "next_cursor": next_cursor}


def feed_after(db: Connection, seq: int, limit: int = 500) -> list[dict[str, Any]]:
    """Status changes with a feed position greater than `seq`, oldest first."""
    rows = _rows(
        db,
        f"SELECT subject, {_columns(TRANSITION_FIELDS)} FROM transitions WHERE seq > ? "
        "ORDER BY seq LIMIT ?",
        (seq, clamp_limit(limit)),
    )
    return [_split_subject(row) for row in rows]


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
    return _rows(
        db,
        f"SELECT {_columns(DOCUMENT_FIELDS)} FROM documents WHERE provider = ? AND kyb_id = ? "
        "ORDER BY id",
        (provider, kyb_id),
    )
