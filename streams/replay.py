"""`kycflow replay`: rebuild the projections from the raw log.

The raw log is the source of truth; projections are derived. Replay folds the whole log (or
the part received up to `--until`) into a fresh database with the same code the live
processor runs, so the tables come out identical. By default it rebuilds in place — into
a temporary file beside the database, then an atomic rename — with the server stopped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from ingest import rawlog
from projections.schema import open_projections
from projections.store import ProjectionStore

Progress = Callable[[int], None]  # called with the number of envelopes just applied
BATCH = 5000


def rebuild(
    raw_path: Path, target: str, *, until: str | None = None, progress: Progress | None = None
) -> int:
    """Fold the raw log into a new projections database at `target`; returns events read."""
    if not raw_path.exists():
        raise FileNotFoundError(f"no raw log at {raw_path}")
    for leftover in (target, target + "-wal", target + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    db = open_projections(target)
    # A scratch file, renamed into place only when complete: no need to fsync while building.
    db.execute("PRAGMA synchronous=OFF")
    store = ProjectionStore(db, fresh=True)
    done = 0
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        after = 0
        while envelopes := rawlog.read_after(raw, after, BATCH, until):
            store.process(envelopes)
            after = envelopes[-1].offset
            done += len(envelopes)
            if progress is not None:
                progress(len(envelopes))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return done


def replay(
    db_path: str,
    *,
    to: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
) -> tuple[int, str]:
    """Rebuild `db_path`'s projections in place, or into `to`; returns (events, path)."""
    raw_path = rawlog.raw_log_path(db_path)
    if to is not None:
        return rebuild(raw_path, to, until=until, progress=progress), to
    scratch = db_path + ".replay"
    count = rebuild(raw_path, scratch, until=until, progress=progress)
    for stale in (db_path + "-wal", db_path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    os.replace(scratch, db_path)
    return count, db_path


def total_events(db_path: str) -> int:
    raw_path = rawlog.raw_log_path(db_path)
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        return rawlog.last_offset(raw)
