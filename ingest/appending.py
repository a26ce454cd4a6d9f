"""Appending to the embedded raw log (`ingest.rawlog`): rows, receipts, group commit.

The writer process (`ingest.writer`) appends what its HTTP workers sent as one transaction
per batch; erasure appends its records inside its own transaction (`insert_row`). With a
master key, rows are sealed here under their subject's data key (`ingest.sealing`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import sealing
from ingest.rawlog import connect
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope


class Receipt(NamedTuple):
    offset: int
    duplicate: bool


# What the writer stores per delivery, headers already as JSON text:
# (provider, received_at, headers_json, body, dedup_key, body_sha256, auth_method, remote_addr,
#  subject) — `subject` is the routing key the data key belongs to ("" : do not seal).
Row = tuple[str, str, str, bytes, str, str, str, str, str]


def row_of(env: RawEnvelope, subject: str = "") -> Row:
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
        subject,
    )


class RawLogWriter:
    """Appends batches in one transaction each: group commit, one fsync per batch.

    With a master key, each row's headers and body are sealed under its subject's data key,
    created (wrapped) in the same transaction as the first row that needs it.
    """

    def __init__(self, path: str | Path, master: MasterKeys | None = None) -> None:
        self.conn = connect(path)
        self.master = master
        self.keys: dict[str, tuple[int, AESGCM]] = {}  # subject -> its current data key
        self.generation = -1

    def append(
        self, envelopes: Sequence[RawEnvelope], subjects: Sequence[str] = ()
    ) -> list[Receipt]:
        subjects = subjects or [""] * len(envelopes)
        return self.append_rows(
            [row_of(env, s) for env, s in zip(envelopes, subjects, strict=True)]
        )

    def append_rows(self, rows: Sequence[Row]) -> list[Receipt]:
        """Durably append; receipts are valid only once this returns (committed).

        Set-at-a-time: one dedup lookup, one key lookup and one INSERT statement per batch
        (`executemany`), not per row — the writer is the one process every webhook waits on.
        """
        if not rows:
            return []
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            self._check_generation(cur)
            duplicates = _duplicates(cur, [row[4] for row in rows])
            stored, key_ids = self._sealed(cur, rows) if self.master else (rows, [None] * len(rows))
            cur.executemany(
                _INSERT,
                [
                    (*row[:6], int(duplicate), row[6], row[7], key_id)
                    for row, duplicate, key_id in zip(stored, duplicates, key_ids, strict=True)
                ],
            )
            first = _last_rowid(cur) - len(rows) + 1  # AUTOINCREMENT, and the lock is ours
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            self.keys.clear()  # keys created in the rolled-back transaction do not exist
            raise
        return [Receipt(first + i, duplicate) for i, duplicate in enumerate(duplicates)]

    def _check_generation(self, cur: sqlite3.Cursor) -> None:
        # Under the write lock, so no erasure can slip between this read and the inserts.
        (generation,) = cur.execute("SELECT n FROM key_generation").fetchone()
        if generation != self.generation:
            self.keys.clear()
            self.generation = generation

    def _sealed(self, cur: sqlite3.Cursor, rows: Sequence[Row]) -> tuple[list[Row], list[Any]]:
        """The rows with headers and body sealed under their subjects' data keys."""
        keys = self._data_keys(cur, {row[8] for row in rows if row[8]})
        sealed: list[Row] = []
        key_ids: list[int | None] = []
        for row in rows:
            provider, _, headers, body, key, _, _, _, subject = row
            if not subject:  # nothing to name a key by: stored as received
                sealed.append(row)
                key_ids.append(None)
                continue
            key_id, data_key = keys[subject]
            aad = sealing.record_aad(provider, key)
            body = sealing.seal(data_key, headers.encode(), body, aad)
            sealed.append((*row[:2], "{}", body, *row[4:]))
            key_ids.append(key_id)
        return sealed, key_ids

    def _data_keys(self, cur: sqlite3.Cursor, subjects: set[str]) -> dict[str, tuple[int, AESGCM]]:
        """Each subject's current data key: cached, stored, or created (wrapped) here."""
        assert self.master is not None
        missing = [subject for subject in subjects if subject not in self.keys]
        if missing:
            if len(self.keys) > 100_000:  # bounded: one entry per recently active subject
                self.keys.clear()
            self.keys.update(self._stored_keys(cur, missing))
            new = [subject for subject in missing if subject not in self.keys]
            self.keys.update(self._created_keys(cur, new))
        return {subject: self.keys[subject] for subject in subjects}

    def _stored_keys(self, cur: sqlite3.Cursor, subjects: list[str]) -> dict[str, Any]:
        assert self.master is not None
        marks = ",".join("?" * len(subjects))
        rows = cur.execute(
            "SELECT key_id, subject, master, wrapped FROM data_keys WHERE key_id IN ("
            f"SELECT max(key_id) FROM data_keys WHERE subject IN ({marks}) GROUP BY subject)",
            subjects,
        ).fetchall()
        unwrap = self.master.unwrap
        return {s: (int(k), AESGCM(unwrap(s, str(m), bytes(w)))) for k, s, m, w in rows}

    def _created_keys(self, cur: sqlite3.Cursor, subjects: list[str]) -> dict[str, Any]:
        if not subjects:
            return {}
        assert self.master is not None
        raw = [sealing.new_data_key() for _ in subjects]
        cur.executemany(
            "INSERT INTO data_keys (subject, master, wrapped) VALUES (?, ?, ?)",
            [(s, *self.master.wrap(s, key)) for s, key in zip(subjects, raw, strict=True)],
        )
        first = _last_rowid(cur) - len(subjects) + 1
        return {
            s: (first + i, AESGCM(key))
            for i, (s, key) in enumerate(zip(subjects, raw, strict=True))
        }

    def close(self) -> None:
        self.conn.close()


_INSERT = (
    "INSERT INTO raw_log (provider, received_at, headers, body, dedup_key, body_sha256, "
    "duplicate, auth_method, remote_addr, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _last_rowid(cur: sqlite3.Cursor) -> int:
    return int(cur.execute("SELECT last_insert_rowid()").fetchone()[0])


def _duplicates(cur: sqlite3.Cursor, keys: list[str]) -> list[bool]:
    """For each dedup key in order: did an earlier delivery (before or in the batch) have it?"""
    seen: set[str] = set()
    for chunk in range(0, len(keys), 10_000):  # SQLite's bound on host parameters is 32,766
        part = keys[chunk : chunk + 10_000]
        marks = ",".join("?" * len(part))
        found = cur.execute(
            f"SELECT dedup_key FROM raw_log WHERE duplicate = 0 AND dedup_key IN ({marks})", part
        )
        seen.update(row[0] for row in found)
    duplicates = []
    for key in keys:
        duplicates.append(key in seen)
        seen.add(key)
    return duplicates


def _seen(cur: sqlite3.Cursor, key: str) -> bool:
    found = cur.execute(
        "SELECT 1 FROM raw_log WHERE dedup_key = ? AND duplicate = 0", (key,)
    ).fetchone()
    return found is not None


def insert_row(
    cur: sqlite3.Cursor, row: Row, key_id: int | None = None, duplicate: bool | None = None
) -> Receipt:
    """Append one row inside the caller's transaction (the writer's batch, or an erasure's).
    `duplicate` None: looked up here (the first delivery of a key is the original)."""
    provider, received_at, headers, body, key, sha, auth, remote, _ = row
    if duplicate is None:
        duplicate = _seen(cur, key)
    cur.execute(
        _INSERT,
        (provider, received_at, headers, body, key, sha, int(duplicate), auth, remote, key_id),
    )
    return Receipt(int(cur.lastrowid or 0), duplicate)
