"""Projection tables (design.md §6), created and evolved by sqlite-utils migrations.

Analysts query these directly. No column holds wall-clock time, so a replay of the raw log
rebuilds them byte for byte. `transitions.seq` is the position in the status feed (the SSE
event id); `subject_events` lists every raw delivery that reached a subject and what it did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from projections.locking import migrating

migrations = Migrations("kycflow.projections")
PROJECTION_TABLES = ("verifications", "transitions", "subject_events", "documents", "quarantine")


@migrations()
def create_projections(db: Database) -> None:
    db.execute("""
        CREATE TABLE verifications (
            subject TEXT PRIMARY KEY,            -- provider/kind/id
            provider TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
            status TEXT, final INTEGER NOT NULL, decided_by TEXT, attempt INTEGER NOT NULL,
            provider_status TEXT, reasons TEXT NOT NULL,      -- JSON list
            version INTEGER NOT NULL, updated_at TEXT,        -- receive time of the last event
            cause_event TEXT, cause_offset INTEGER,
            parent_kind TEXT, parent_id TEXT,
            -- What the fold needs beyond the columns above to resume this subject:
            fold_winner TEXT,                                 -- precedence key, comma-joined
            fold_attempts TEXT NOT NULL,                      -- attempt keys, comma-joined
            fold_seen BLOB NOT NULL                           -- 8-byte digests of dedup keys
        )""")
    db.execute("CREATE INDEX verifications_by_status ON verifications (provider, kind, status)")
    db.execute("""
        CREATE TABLE transitions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,            -- status feed position
            subject TEXT NOT NULL, version INTEGER NOT NULL,
            from_status TEXT, to_status TEXT NOT NULL, trigger TEXT NOT NULL,
            attempt INTEGER NOT NULL, final INTEGER NOT NULL, decided_by TEXT,
            event_type TEXT NOT NULL, dedup_key TEXT NOT NULL,
            "offset" INTEGER NOT NULL, received_at TEXT NOT NULL,
            provider_status TEXT, reasons TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX transitions_by_subject ON transitions (subject, seq)")
    db.execute("""
        CREATE TABLE subject_events (
            "offset" INTEGER PRIMARY KEY,                     -- raw_log offset
            subject TEXT NOT NULL, event_type TEXT NOT NULL,
            effect TEXT NOT NULL,                             -- transition | duplicate | late …
            reason TEXT, version INTEGER NOT NULL, received_at TEXT NOT NULL
        )""")
    db.execute('CREATE INDEX subject_events_by_subject ON subject_events (subject, "offset")')
    db.execute("""
        CREATE TABLE documents (
            subject TEXT PRIMARY KEY, provider TEXT NOT NULL, id TEXT NOT NULL,
            kyb_id TEXT, status TEXT, final INTEGER NOT NULL,
            version INTEGER NOT NULL, updated_at TEXT
        )""")
    db.execute("CREATE INDEX documents_by_kyb ON documents (provider, kyb_id)")
    db.execute("""
        CREATE TABLE quarantine (
            "offset" INTEGER PRIMARY KEY, provider TEXT NOT NULL, reason TEXT NOT NULL,
            event_type TEXT, dedup_key TEXT NOT NULL, received_at TEXT NOT NULL
        )""")
    db.execute('CREATE TABLE checkpoint (name TEXT PRIMARY KEY, "offset" INTEGER NOT NULL)')


def open_projections(path: str) -> Database:
    """The projections database, migrated; WAL so the API reads while the processor writes."""
    db = Database(path)
    db.execute("PRAGMA busy_timeout=5000")
    # Erasure (docs/personal-data.md): deleted rows and overwritten values are zeroed in
    # the file, not merely unlinked, so an erased reference cannot be read from free pages.
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA synchronous=NORMAL")  # the raw log is the durable copy; this is derived
    # Subject keys are random (UUIDs): with SQLite's default 2 MB page cache, upserts into
    # large tables thrash it. 64 MB keeps the hot B-tree pages resident.
    db.execute("PRAGMA cache_size=-65536")
    with _migration_lock(path):
        db.execute("PRAGMA journal_mode=WAL")
        migrations.apply(db)
    return db


@contextlib.contextmanager
def _migration_lock(path: str) -> Iterator[None]:
    """`serve` and `project` (Kafka mode) may start together on a fresh database: one
    migrates while the other waits, instead of both creating the same tables."""
    if path == ":memory:":
        yield
        return
    with migrating(path):
        # Left behind by versions that kept a lock file of their own for this.
        Path(f"{path}.migrate-lock").unlink(missing_ok=True)
        yield


@migrations()
def transitions_unique_per_version(db: Database) -> None:
    # One transition per subject version: Kafka mode's projector may receive a transition
    # twice (at-least-once) and relies on this to apply it once.
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS transitions_by_version ON transitions (subject, version)"
    )


@migrations()
def verifications_by_update(db: Database) -> None:
    # `GET /verifications?order=newest` pages by (updated_at, subject): 0.3 ms a page at
    # 300k rows with this index, 50 ms (a full sort on the API's event loop) without.
    db.execute(
        "CREATE INDEX IF NOT EXISTS verifications_by_update ON verifications (updated_at, subject)"
    )


@migrations()
def verification_references(db: Database) -> None:
    # Issue 10 §4: integrators look verifications up by their own id. `reference` is the
    # primary one (iDenfy clientId, Ondato externalReferenceId, IDWise referenceNo) and
    # `references` every one seen (a sorted JSON list, at most 8). Rows projected before
    # this migration get them from `kycflow replay`.
    db.execute("ALTER TABLE verifications ADD COLUMN reference TEXT")
    db.execute("""ALTER TABLE verifications ADD COLUMN "references" TEXT NOT NULL DEFAULT '[]'""")
    db.execute("CREATE INDEX verifications_by_reference ON verifications (reference)")
    # The other references (an iDenfy externalRef beside the clientId …), one row per pair,
    # so `?reference=` finds them by index too. Most subjects have none. Triggers keep it,
    # so every writer (processor, Kafka projector, replay's merge) agrees; writers upsert
    # (INSERT OR REPLACE would not fire the delete trigger).
    db.execute("""
        CREATE TABLE verification_references (
            reference TEXT NOT NULL, subject TEXT NOT NULL, PRIMARY KEY (reference, subject)
        ) WITHOUT ROWID""")
    db.execute(f"""
        CREATE TRIGGER verification_references_on_insert AFTER INSERT ON verifications
        WHEN new."references" NOT IN ('[]', json_array(new.reference))
        BEGIN {_ADD_OTHERS} END""")
    # Only when they change: most updates of a subject leave its references as they were.
    db.execute(f"""
        CREATE TRIGGER verification_references_on_update
        AFTER UPDATE OF reference, "references" ON verifications
        WHEN old.reference IS NOT new.reference OR old."references" IS NOT new."references"
        BEGIN {_REMOVE_OTHERS} {_ADD_OTHERS} END""")
    db.execute(f"""
        CREATE TRIGGER verification_references_on_delete AFTER DELETE ON verifications
        BEGIN {_REMOVE_OTHERS} END""")


# Found through the old row's own references, by key: no index on `subject` to maintain.
_REMOVE_OTHERS = """
    DELETE FROM verification_references WHERE subject = old.subject
    AND reference IN (SELECT value FROM json_each(old."references"));"""
# NOT EXISTS, not OR IGNORE: an upsert's ON CONFLICT overrides a trigger's conflict clause.
_ADD_OTHERS = """
    INSERT INTO verification_references (reference, subject)
    SELECT value, new.subject FROM json_each(new."references") AS one
    WHERE one.value IS NOT new.reference AND NOT EXISTS (
        SELECT 1 FROM verification_references WHERE reference = one.value
        AND subject = new.subject
    );"""


@migrations()
def verifications_erased(db: Database) -> None:
    # Issue 12: when the subject was last erased (null: never), and the fold's log position
    # of its latest erasure of everything (scope "all"), which Kafka mode's projector needs
    # to drop the rows from before it whatever order the topics arrive in.
    db.execute("ALTER TABLE verifications ADD COLUMN erased_at TEXT")
    db.execute("ALTER TABLE verifications ADD COLUMN fold_erased_before INTEGER")
    # Kafka mode's projector only: quarantine positions erasures dropped, so that a
    # quarantine record arriving after the erasure (another topic) stays out. Positions
    # only: nothing personal.
    db.execute('CREATE TABLE dropped_quarantine ("offset" INTEGER PRIMARY KEY)')
