"""The embedded raw log: an append-only SQLite table, the source of truth (design.md §3).

One process appends (the writer); readers (processor, replay, inspect) tail it. It lives in
its own file beside the projections database: SQLite allows one writer per file, and two
processes writing one file stall each other (design.md §8: p99 ≈ 1 s), so ingest never
waits on projection writes. Durability: WAL with `synchronous=FULL`, so a commit has been
fsynced before anyone is told "202".
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pydantic_core

from statemachines.envelope import RawEnvelope

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_log (
    "offset"     INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a crash
    provider     TEXT    NOT NULL,
    received_at  TEXT    NOT NULL,
    headers      TEXT    NOT NULL,                   -- JSON; never credential values
    body         BLOB    NOT NULL,                   -- the exact bytes received
    dedup_key    TEXT    NOT NULL,
    body_sha256  TEXT    NOT NULL,
    duplicate    INTEGER NOT NULL,                   -- 1: an earlier delivery has this key
    auth_method  TEXT    NOT NULL,
    remote_addr  TEXT    NOT NULL
);
-- The first delivery of each key: permanent dedup, and the lookup that enforces it.
CREATE UNIQUE INDEX IF NOT EXISTS raw_log_first_delivery
    ON raw_log (dedup_key) WHERE duplicate = 0;
"""
COLUMNS = (
    '"offset", provider, received_at, headers, body, dedup_key, body_sha256, duplicate, '
    "auth_method, remote_addr"
)


def raw_log_path(db_path: str | Path) -> Path:
    """`kycflow.db` -> `kycflow.raw.db`: the raw log's file beside the projections."""
    path = Path(db_path)
    return path.with_name(path.stem + ".raw" + (path.suffix or ".db"))


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Receipt(NamedTuple):
    offset: int
    duplicate: bool


# What the writer stores per delivery, headers already as JSON text:
# (provider, received_at, headers_json, body, dedup_key, body_sha256, auth_method, remote_addr)
Row = tuple[str, str, str, bytes, str, str, str, str]


def row_of(env: RawEnvelope) -> Row:
    headers = json.dumps(dict(env.headers), separators=(",", ":"))
    return (
        env.provider,
        env.received_at,
        headers,
        env.body,
        env.dedup_key,
        env.body_sha256,
        env.auth_method,
        env.remote_addr,
    )


class RawLogWriter:
    """Appends batches in one transaction each: group commit, one fsync per batch."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)

    def append(self, envelopes: Sequence[RawEnvelope]) -> list[Receipt]:
        return self.append_rows([row_of(env) for env in envelopes])

    def append_rows(self, rows: Sequence[Row]) -> list[Receipt]:
        """Durably append; receipts are valid only once this returns (committed)."""
        receipts: list[Receipt] = []
        batch_keys: set[str] = set()
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for provider, received_at, headers, body, key, sha, auth, remote in rows:
                duplicate = key in batch_keys or self._seen(cur, key)
                batch_keys.add(key)
                cur.execute(
                    "INSERT INTO raw_log (provider, received_at, headers, body, dedup_key, "
                    "body_sha256, duplicate, auth_method, remote_addr) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (provider, received_at, headers, body, key, sha, int(duplicate), auth, remote),
                )
                receipts.append(Receipt(int(cur.lastrowid or 0), duplicate))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return receipts

    @staticmethod
    def _seen(cur: sqlite3.Cursor, key: str) -> bool:
        found = cur.execute(
            "SELECT 1 FROM raw_log WHERE dedup_key = ? AND duplicate = 0", (key,)
        ).fetchone()
        return found is not None

    def close(self) -> None:
        self.conn.close()


def envelope_from_row(row: Sequence[Any]) -> RawEnvelope:
    """A raw_log row (in COLUMNS order) as the envelope the core reads."""
    offset, provider, received_at, headers, body, dedup, sha, duplicate, auth, remote = row
    return RawEnvelope(
        provider=str(provider),
        body=bytes(body),
        headers=pydantic_core.from_json(headers),
        received_at=str(received_at),
        dedup_key=str(dedup),
        body_sha256=str(sha),
        auth_method=str(auth),
        remote_addr=str(remote),
        offset=int(offset),
        duplicate=bool(duplicate),
    )


def read_after(conn: sqlite3.Connection, offset: int, limit: int) -> list[RawEnvelope]:
    """Up to `limit` envelopes after `offset`, in log order."""
    rows = conn.execute(
        f'SELECT {COLUMNS} FROM raw_log WHERE "offset" > ? ORDER BY "offset" LIMIT ?',
        (offset, limit),
    ).fetchall()
    return [envelope_from_row(row) for row in rows]


def read_range(
    conn: sqlite3.Connection, after: int, upto: int, until: str | None = None
) -> list[RawEnvelope]:
    """Envelopes with after < offset <= upto, in log order (optionally received <= until)."""
    query = f'SELECT {COLUMNS} FROM raw_log WHERE "offset" > ? AND "offset" <= ?'
    params: tuple[object, ...] = (after, upto)
    if until is not None:
        query, params = query + " AND received_at <= ?", (*params, until)
    rows = conn.execute(query + ' ORDER BY "offset"', params).fetchall()
    return [envelope_from_row(row) for row in rows]


def iterate(conn: sqlite3.Connection, after: int = 0, batch: int = 2000) -> Iterator[RawEnvelope]:
    while envelopes := read_after(conn, after, batch):
        yield from envelopes
        after = envelopes[-1].offset


def last_offset(conn: sqlite3.Connection) -> int:
    row = conn.execute('SELECT max("offset") FROM raw_log').fetchone()
    return int(row[0] or 0)


def deliveries(conn: sqlite3.Connection, offsets: Sequence[int]) -> list[RawEnvelope]:
    """The envelopes at the given offsets (for history and inspect)."""
    if not offsets:
        return []
    marks = ",".join("?" * len(offsets))
    rows = conn.execute(
        f'SELECT {COLUMNS} FROM raw_log WHERE "offset" IN ({marks}) ORDER BY "offset"',
        tuple(offsets),
    ).fetchall()
    return [envelope_from_row(row) for row in rows]
