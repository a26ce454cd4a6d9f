"""`kycflow replay`: rebuild the projections from the raw log.

The raw log is the source of truth; projections are derived. Replay folds the whole log (or
the part received up to `--until`) into a fresh database with the same code the live
processor runs, so the tables come out identical. By default it rebuilds in place — into
a temporary file beside the database, then an atomic rename — with the server stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ingest import rawlog
from projections.schema import open_projections
from projections.store import ProjectionStore
from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Order, Subject, Unrecognised
from statemachines.normalise import normalise
from streams.tuning import tune_gc

Progress = Callable[[int], None]  # called with the number of envelopes just applied
BATCH = 5000
AHEAD = 4  # batches the reader may normalise ahead of the folding process
Normalised = tuple[int, str, str, str, tuple[Any, ...]]


def rebuild(
    raw_path: Path, target: str, *, until: str | None = None, progress: Progress | None = None
) -> int:
    """Fold the raw log into a new projections database at `target`; returns events read.

    Two processes share the work: a forked reader normalises batches of the log (parsing is
    most of the core's cost) while this process folds them in log order and writes. The
    fold and the store are the live processor's own, so the tables come out identical.
    """
    if not raw_path.exists():
        raise FileNotFoundError(f"no raw log at {raw_path}")
    tune_gc()
    for leftover in (target, target + "-wal", target + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    db = open_projections(target)
    db.execute("PRAGMA synchronous=OFF")  # a scratch file, renamed into place when complete
    indexes = _drop_indexes(db)  # built once at the end: cheaper than maintained per row
    store = ProjectionStore(db, fresh=True)
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        last = rawlog.last_offset(raw)
    done = 0
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as reader:
        starts = iter(range(0, last, BATCH))
        pending = deque(
            reader.submit(_normalise, raw_path, start, BATCH, until)
            for start in itertools.islice(starts, AHEAD)
        )
        while pending:
            batch = pending.popleft().result()
            if (start := next(starts, None)) is not None:
                pending.append(reader.submit(_normalise, raw_path, start, BATCH, until))
            if batch:
                store.process_normalised(
                    [(_envelope(*item[:4]), _rebuild(item[4])) for item in batch]
                )
                done += len(batch)
                if progress is not None:
                    progress(len(batch))
    for sql in indexes:
        db.execute(sql)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return done


def _normalise(raw_path: Path, after: int, count: int, until: str | None) -> list[Normalised]:
    """Reader process: envelopes in (after, after + count], normalised."""
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        envelopes = rawlog.read_range(raw, after, after + count, until)
    return [
        (e.offset, e.provider, e.received_at, e.dedup_key, _flat(normalise(e))) for e in envelopes
    ]


# Named tuples pickle ~4x slower than plain ones (each carries its class): the reader sends
# plain tuples and this process rebuilds the records.
def _flat(event: CanonicalEvent | Unrecognised) -> tuple[Any, ...]:
    if isinstance(event, Unrecognised):
        return (False, *event)
    e = event
    return (
        True,
        tuple(e.subject),
        e.event_type,
        e.status,
        tuple(e.order),
        e.dedup_key,
        e.offset,
        e.received_at,
        e.final,
        e.decided_by,
        e.provider_status,
        e.reasons,
        tuple(e.parent) if e.parent else None,
        e.note,
        e.recognised,
    )


def _rebuild(flat: tuple[Any, ...]) -> CanonicalEvent | Unrecognised:
    if not flat[0]:
        return Unrecognised(*flat[1:])
    (
        _,
        subject,
        event_type,
        status,
        order,
        dedup_key,
        offset,
        received_at,
        final,
        decided_by,
        provider_status,
        reasons,
        parent,
        note,
        recognised,
    ) = flat
    return CanonicalEvent(
        Subject(*subject),
        event_type,
        status,
        Order(*order),
        dedup_key,
        offset,
        received_at,
        final,
        decided_by,
        provider_status,
        reasons,
        Subject(*parent) if parent else None,
        note,
        recognised,
    )


def _envelope(offset: int, provider: str, received_at: str, dedup_key: str) -> RawEnvelope:
    """What the store needs of an envelope it did not read itself."""
    return RawEnvelope(provider, b"", {}, received_at, dedup_key, "", offset=offset)


def _drop_indexes(db: Database) -> list[str]:
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in rows:
        db.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


def parse_until(text: str) -> str:
    """An ISO-8601 time as the raw log writes `received_at`, so they compare as times."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time, e.g. 2026-11-22T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the log's clock is UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
