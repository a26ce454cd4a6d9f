"""The embedded raw log: an append-only SQLite table, the source of truth (design.md §3).

One process appends (the writer, through `ingest.appending`); readers (processor, replay,
inspect) tail it. It lives in
its own file beside the projections database: SQLite allows one writer per file, and two
processes writing one file stall each other (design.md §8: p99 ≈ 1 s), so ingest never
waits on projection writes. Durability: WAL with `synchronous=FULL`, so a commit has been
fsynced before anyone is told "202".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pydantic_core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import sealing
from ingest.sealing import MasterKeyError, MasterKeys
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
-- Encryption at rest (ingest.sealing): one data key per subject, wrapped by a master key.
-- Deleting a subject's rows here is what makes its sealed bodies unreadable.
CREATE TABLE IF NOT EXISTS data_keys (
    key_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    subject  TEXT NOT NULL,   -- routing key: provider/kind/id, or an unreadable one's dedup key
    master   TEXT NOT NULL,   -- fingerprint of the master key that wraps it
    wrapped  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS data_keys_by_subject ON data_keys (subject);
-- Deliveries whose personal data is gone (erasure, retention): the canonical event each had
-- become (statemachines.reduced), or '' when nothing was kept. The fold reads it instead.
CREATE TABLE IF NOT EXISTS reduced (
    "offset"  INTEGER PRIMARY KEY,
    event     TEXT NOT NULL
);
-- Bumped by every change that destroys data keys: the writer drops its cached keys then.
CREATE TABLE IF NOT EXISTS key_generation (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER);
INSERT OR IGNORE INTO key_generation VALUES (1, 0);
"""
COLUMNS = (
    'r."offset", r.provider, r.received_at, r.headers, r.body, r.dedup_key, r.body_sha256, '
    "r.duplicate, r.auth_method, r.remote_addr, r.key_id, d.event"
)
# Every read goes through this join: a reduced delivery reads as its kept event.
FROM = 'raw_log AS r LEFT JOIN reduced AS d ON d."offset" = r."offset"'


def raw_log_path(db_path: str | Path) -> Path:
    """`kycflow.db` -> `kycflow.raw.db`: the raw log's file beside the projections."""
    path = Path(db_path)
    return path.with_name(path.stem + ".raw" + (path.suffix or ".db"))


class RawConnection(sqlite3.Connection):
    """A connection to the raw log that knows how to open sealed rows (`keys`)."""

    keys: DataKeys | None = None


def connect(
    path: str | Path, *, readonly: bool = False, master: MasterKeys | None = None
) -> RawConnection:
    """Open the raw log; with `master`, sealed rows are read in the clear (else refused)."""
    conn: RawConnection
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, factory=RawConnection
        )
    else:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=RawConnection
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Erased rows and keys are overwritten with zeros, not merely unlinked from the tree.
        conn.execute("PRAGMA secure_delete=ON")
        conn.executescript(SCHEMA)
        _migrate(conn)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.keys = DataKeys(conn, master) if master is not None else None
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(raw_log)")}
    if "key_id" not in columns:  # logs written before encryption at rest: rows in the clear
        conn.execute("ALTER TABLE raw_log ADD COLUMN key_id INTEGER")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS raw_log_by_key ON raw_log (key_id) WHERE key_id IS NOT NULL"
    )


class DataKeys:
    """Data keys of one raw log, unwrapped on first use and cached by key id."""

    def __init__(self, conn: sqlite3.Connection, master: MasterKeys) -> None:
        self.conn, self.master = conn, master
        self.cache: dict[int, AESGCM | None] = {}  # None: destroyed (its subject was erased)

    def get(self, key_ids: set[int]) -> dict[int, AESGCM | None]:
        """The keys of `key_ids` (at least; the cache itself, not a copy: read, don't keep)."""
        cache = self.cache
        missing = [key_id for key_id in key_ids if key_id not in cache]
        if missing:
            if len(cache) + len(missing) > 100_000:
                cache.clear()
                missing = list(key_ids)
            marks = ",".join("?" * len(missing))
            rows = self.conn.execute(
                f"SELECT key_id, subject, master, wrapped FROM data_keys WHERE key_id IN ({marks})",
                missing,
            ).fetchall()
            unwrap = self.master.unwrap
            for key_id in missing:
                cache[key_id] = None  # no row: destroyed
            for k, s, m, w in rows:
                cache[int(k)] = AESGCM(unwrap(s, m, bytes(w)))
        return cache

    def forget(self) -> None:
        """Drop cached keys: some were destroyed (an erasure) since they were read."""
        self.cache.clear()


def check_master(conn: sqlite3.Connection, master: MasterKeys) -> None:
    """Refuse, by name, a master key that does not open this log's data keys."""
    for (fingerprint,) in conn.execute("SELECT DISTINCT master FROM data_keys").fetchall():
        if fingerprint not in master.keys:
            raise MasterKeyError(
                f"the raw log's data keys are wrapped by master key {fingerprint}, which is not "
                f"configured (configured: {', '.join(master.keys)}); set "
                f"{sealing.MASTER_KEY} or {sealing.MASTER_KEY_FILE}"
            )
    row = conn.execute("SELECT subject, master, wrapped FROM data_keys LIMIT 1").fetchone()
    if row is not None:
        master.unwrap(str(row[0]), str(row[1]), bytes(row[2]))


def holds_data_keys(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone() is not None


def _envelopes(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[RawEnvelope]:
    """Rows in COLUMNS order as envelopes: sealed ones opened, reduced ones as kept."""
    keys = getattr(conn, "keys", None)
    sealed = {int(row[10]) for row in rows if row[10] is not None and row[11] is None}
    if sealed and keys is None:
        raise MasterKeyError(
            "the raw log is encrypted and no master key was given to read it "
            f"(set {sealing.MASTER_KEY} or {sealing.MASTER_KEY_FILE})"
        )
    data_keys = keys.get(sealed) if sealed and keys is not None else {}
    return [_envelope(row, data_keys) for row in rows]


def _envelope(row: Sequence[Any], data_keys: dict[int, AESGCM | None]) -> RawEnvelope:
    offset, provider, received_at, headers, body, dedup, sha, duplicate, auth, remote = row[:10]
    key_id, reduced = row[10], row[11]
    body = bytes(body)
    if reduced is None and key_id is not None:
        data_key = data_keys.get(int(key_id))
        if data_key is None:  # destroyed but not reduced: nothing can be read or kept
            reduced, body = "", b""
        else:
            try:
                plain_headers, body = sealing.unseal(
                    data_key, body, sealing.record_aad(str(provider), str(dedup))
                )
            except (InvalidTag, ValueError):
                raise MasterKeyError(
                    f"raw log row {offset} does not open with its data key"
                ) from None
            headers = plain_headers.decode()
    if reduced is not None:
        body, headers = b"", "{}"
    # Positional (the field order of RawEnvelope): keywords cost ~1 us more per row here.
    return RawEnvelope(
        str(provider),
        body,
        pydantic_core.from_json(headers),
        str(received_at),
        str(dedup),
        str(sha),
        str(auth),
        str(remote),
        int(offset),
        bool(duplicate),
        None if reduced is None else str(reduced),
    )


def read_after(conn: sqlite3.Connection, offset: int, limit: int) -> list[RawEnvelope]:
    """Up to `limit` envelopes after `offset`, in log order."""
    rows = conn.execute(
        f'SELECT {COLUMNS} FROM {FROM} WHERE r."offset" > ? ORDER BY r."offset" LIMIT ?',
        (offset, limit),
    ).fetchall()
    return _envelopes(conn, rows)


def read_range(
    conn: sqlite3.Connection, after: int, upto: int, until: str | None = None
) -> list[RawEnvelope]:
    """Envelopes with after < offset <= upto, in log order (optionally received <= until)."""
    query = f'SELECT {COLUMNS} FROM {FROM} WHERE r."offset" > ? AND r."offset" <= ?'
    params: tuple[object, ...] = (after, upto)
    if until is not None:
        query, params = query + " AND r.received_at <= ?", (*params, until)
    rows = conn.execute(query + ' ORDER BY r."offset"', params).fetchall()
    return _envelopes(conn, rows)


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
        f'SELECT {COLUMNS} FROM {FROM} WHERE r."offset" IN ({marks}) ORDER BY r."offset"',
        tuple(offsets),
    ).fetchall()
    return _envelopes(conn, rows)


Reader = Callable[[list[int]], dict[int, RawEnvelope]]


def reader(db_path: str | Path, master: MasterKeys | None = None) -> Reader:
    """Deliveries by offset from the raw log beside a projections database (inspect, the
    console); none when that log does not exist (projections copied without it)."""

    def read(offsets: list[int]) -> dict[int, RawEnvelope]:
        path = raw_log_path(db_path)
        if not path.exists():
            return {}
        conn = connect(path, readonly=True, master=master)
        try:
            return {env.offset: env for env in deliveries(conn, offsets)}
        finally:
            conn.close()

    return read
