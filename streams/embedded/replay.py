"""`kycflow replay`: rebuild the projections from the raw log.

The raw log is the source of truth; projections are derived. Replay folds the whole log (or
the part received up to `--until`) into a fresh database with the same code the live
processor runs, so the tables come out identical. By default it rebuilds in place, or
else into `--to`; either way into a file beside the destination, then an atomic rename, so
the destination holds the old file or the whole new one. It refuses a destination that a
service serves or another process writes (a live service would go on writing the old file).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ingest import rawlog
from ingest.sealing import MasterKeys
from projections.locking import DatabaseInUse, Role, claim, tidy
from projections.schema import PROJECTION_TABLES, open_projections
from projections.store import ProjectionStore
from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Order, Subject, Unrecognised
from statemachines.normalise import normalise
from streams.config import KycflowError
from streams.tuning import tune_gc

Progress = Callable[[int], None]  # called with the number of envelopes just read and routed
BATCH = 5000
# Folding processes (and as many readers), one per core: subjects fold independently of
# each other. At most 8: the merge attaches them all, and SQLite attaches at most 10.
SHARDS = min(os.cpu_count() or 1, 8)
AHEAD = 2 * SHARDS  # batches the readers may normalise ahead of the folding processes
Normalised = tuple[int, str, str, str, tuple[Any, ...]]


def rebuild(
    raw_path: Path,
    target: str,
    *,
    until: str | None = None,
    progress: Progress | None = None,
    master: MasterKeys | None = None,
) -> int:
    """Fold the raw log into a new projections database at `target`; returns events read.

    Reader processes normalise batches of the log (parsing is most of the core's cost) and
    split each batch by subject into SHARDS parts; each folding process runs the live
    processor's store over its part, in log order, into a scratch file. A subject's fold
    sees only its own events, so together the shards hold exactly the live rows; one SQL
    pass merges them into a file beside `target`, which then replaces it.
    """
    if not raw_path.exists():
        raise FileNotFoundError(f"no raw log at {raw_path}")
    try:
        with _claimed(target):
            return _rebuild_into(raw_path, target, until, progress, master)
    finally:
        tidy(raw_path)  # read-only readers leave its -wal and -shm when it is not in use


@contextlib.contextmanager
def _claimed(target: str) -> Iterator[None]:
    """The destination to itself: no service serves it and no one else writes it."""
    try:
        held = claim(target, Role.SERVE, Role.WRITER)
    except DatabaseInUse as exc:
        raise KycflowError(
            f"{exc}; stop it before replaying into this file, or replay --to another file"
        ) from None
    with held:
        yield


def _rebuild_into(
    raw_path: Path,
    target: str,
    until: str | None,
    progress: Progress | None,
    master: MasterKeys | None,
) -> int:
    tune_gc()
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        last = rawlog.last_offset(raw)
    scratch, shards = f"{target}.replay", [f"{target}.shard{k}" for k in range(SHARDS)]
    _scratch(scratch).close()  # an unwritable destination fails here, not in a child
    fork = multiprocessing.get_context("fork")
    # Bounded: a folding process that falls behind holds the readers back, not the memory.
    inboxes: list[multiprocessing.Queue[bytes | None]] = [fork.Queue(AHEAD) for _ in shards]
    # Forked before the reader pool starts any thread, so no lock is copied mid-use.
    folders = [
        fork.Process(target=_fold, args=(path, inbox), daemon=True)
        for path, inbox in zip(shards, inboxes, strict=True)
    ]
    for folder in folders:
        folder.start()
    done = checkpoint = 0
    try:
        with ProcessPoolExecutor(SHARDS, fork, initializer=_die_with_parent) as readers:
            starts = iter(range(0, last, BATCH))
            pending = deque(
                readers.submit(_normalise, raw_path, start, BATCH, until, master)
                for start in itertools.islice(starts, AHEAD)
            )
            while pending:
                count, upto, parts = pending.popleft().result()
                if (start := next(starts, None)) is not None:
                    pending.append(
                        readers.submit(_normalise, raw_path, start, BATCH, until, master)
                    )
                for folder, inbox, part in zip(folders, inboxes, parts, strict=True):
                    if part:
                        _put(inbox, part, folder)
                if count:
                    done, checkpoint = done + count, upto
                    if progress is not None:
                        progress(count)
        for folder, inbox in zip(folders, inboxes, strict=True):
            _put(inbox, None, folder)
        for folder in folders:
            folder.join()
            if folder.exitcode != 0:
                raise RuntimeError(
                    f"replay: a folding process failed (exit code {folder.exitcode})"
                )
        _merge(scratch, shards, checkpoint)
        for stale in (target + "-wal", target + "-shm"):  # the old file's, if any
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        os.replace(scratch, target)  # atomic: readers see the old file or the whole new one
    finally:
        for folder, inbox in zip(folders, inboxes, strict=True):
            folder.kill()
            inbox.cancel_join_thread()  # what a dead folder never read must not block exit
        for path in (scratch, *shards):
            _remove(path)
    return done


def _normalise(
    raw_path: Path, after: int, count: int, until: str | None, master: MasterKeys | None
) -> tuple[int, int, list[bytes]]:
    """Reader process: envelopes in (after, after + count], normalised, split by shard.

    Returns how many were read, the last offset read, and each shard's part, pickled here so
    the parent process forwards bytes without unpickling them.
    """
    with contextlib.closing(rawlog.connect(raw_path, readonly=True, master=master)) as raw:
        envelopes = rawlog.read_range(raw, after, after + count, until)
    parts: list[list[Normalised]] = [[] for _ in range(SHARDS)]
    for e in envelopes:
        event = normalise(e)
        # Unrecognised envelopes have no subject; they only become quarantine rows.
        shard = 0 if isinstance(event, Unrecognised) else _shard(event.subject.key)
        parts[shard].append((e.offset, e.provider, e.received_at, e.dedup_key, _flat(event)))
    blobs = [pickle.dumps(part, pickle.HIGHEST_PROTOCOL) if part else b"" for part in parts]
    return len(envelopes), envelopes[-1].offset if envelopes else 0, blobs


def _shard(key: str) -> int:
    """Stable across processes, unlike `hash()` of a str."""
    return zlib.crc32(key.encode()) % SHARDS


def _put(
    inbox: multiprocessing.Queue[bytes | None], item: bytes | None, folder: BaseProcess
) -> None:
    """Queue for a folding process; raise, rather than wait forever, if it died."""
    while folder.is_alive():
        with contextlib.suppress(queue.Full):
            return inbox.put(item, timeout=1)
    raise RuntimeError(f"replay: a folding process failed (exit code {folder.exitcode})")


def _fold(path: str, inbox: multiprocessing.Queue[bytes | None]) -> None:
    """Folding process: the live store over one shard's envelopes, into a scratch file."""
    _die_with_parent()
    db = _scratch(path)
    _drop_indexes(db)  # only the merged file needs them
    # Feed positions of transitions erasures of everything deleted: the live processor
    # numbered them before deleting them, so the merge numbers them too (see _merge).
    db.execute('CREATE TABLE wiped ("offset" INTEGER PRIMARY KEY)')
    store = ProjectionStore(db, fresh=True)
    while (part := inbox.get()) is not None:
        batch: list[Normalised] = pickle.loads(part)
        pairs = [(_envelope(*item[:4]), _rebuild(item[4])) for item in batch]
        store.process_normalised(pairs)
        wiped = [
            (position,)
            for _, event in pairs
            if isinstance(event, CanonicalEvent) and event.erase == "all"
            for position in event.wiped
        ]
        if wiped:
            with db.conn:
                db.conn.executemany("INSERT OR IGNORE INTO wiped VALUES (?)", wiped)
    # The merge reads transitions by offset. Here that is also seq order, but SQLite can't
    # know it; without this index the merge sorts them, on one core instead of two.
    db.execute('CREATE INDEX transitions_by_offset ON transitions ("offset")')
    db.close()


def _die_with_parent() -> None:
    """A child killed with its parent, even by SIGKILL, rather than left waiting forever."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _scratch(path: str) -> Database:
    """A fresh projections file for replay to fill: no journal, no fsync.

    Nothing reads it until it is complete, and a failed replay deletes it (`--to` and
    in-place replays build beside the destination and rename), so crash safety buys
    nothing here.
    """
    _remove(path)
    db = open_projections(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    return db


def _merge(target: str, shards: list[str], checkpoint: int) -> None:
    """The shards' rows into a fresh `target`, then its indexes.

    `transitions.seq` is the feed position: the live processor numbers transitions in log
    order, and an envelope causes at most one, so inserting them by "offset" numbers them
    the same. Every other row belongs to one subject or offset, so to one shard.
    """
    db = _scratch(target)
    indexes = _drop_indexes(db)  # built once at the end: cheaper than maintained per row
    conn = db.conn
    for k, path in enumerate(shards):
        conn.execute(f"ATTACH DATABASE ? AS shard{k}", (path,))
    with conn:
        for table in PROJECTION_TABLES:
            if table != "transitions":
                for k in range(len(shards)):  # a plain copy: SQLite moves the rows undecoded
                    conn.execute(f"INSERT INTO {table} SELECT * FROM shard{k}.{table}")
        columns = ", ".join(f'"{c}"' for c in db["transitions"].columns_dict if c != "seq")
        rows = " UNION ALL ".join(
            f"SELECT {columns} FROM shard{k}.transitions" for k in range(len(shards))
        )
        # Placeholders (subject '') hold the positions of wiped transitions while the rows
        # are numbered, so every later transition gets the seq the live processor gave it.
        wiped = " UNION ALL ".join(
            f"SELECT {_placeholder(db)} FROM shard{k}.wiped" for k in range(len(shards))
        )
        conn.execute(
            f'INSERT INTO transitions ({columns}) {rows} UNION ALL {wiped} ORDER BY "offset"'
        )
        conn.execute("DELETE FROM transitions WHERE subject = ''")
    for k in range(len(shards)):
        conn.execute(f"DETACH DATABASE shard{k}")
    if checkpoint:  # the last envelope read, as the live processor records it
        ProjectionStore(db).apply([], checkpoint)
    for sql in indexes:
        db.execute(sql)
    db.execute("PRAGMA journal_mode=WAL")  # as the service opens it
    db.close()


def _placeholder(db: Database) -> str:
    """A transitions row of nothing but an offset: '' or 0 where a value is required."""
    values = []
    for _, name, kind, required, _, _ in db.execute("PRAGMA table_info(transitions)"):
        if name == "seq":
            continue
        empty = "0" if kind == "INTEGER" else "''"
        values.append('"offset"' if name == "offset" else empty if required else "NULL")
    return ", ".join(values)


def _remove(path: str) -> None:
    for leftover in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)


# Named tuples pickle ~4x slower than plain ones (each carries its class): the readers send
# plain tuples and the folding processes rebuild the records.
_NESTED = {"subject": Subject, "order": Order, "parent": Subject}  # named tuples in an event
_SLOTS = [(i, _NESTED[name]) for i, name in enumerate(CanonicalEvent._fields) if name in _NESTED]


def _flat(event: CanonicalEvent | Unrecognised) -> tuple[Any, ...]:
    if isinstance(event, Unrecognised):
        return (False, *event)
    fields: list[Any] = list(event)  # every field, so a new one cannot be left behind
    for i, _ in _SLOTS:
        if fields[i] is not None:
            fields[i] = tuple(fields[i])
    return (True, *fields)


def _rebuild(flat: tuple[Any, ...]) -> CanonicalEvent | Unrecognised:
    if not flat[0]:
        return Unrecognised(*flat[1:])
    fields: list[Any] = list(flat[1:])
    for i, kind in _SLOTS:
        if fields[i] is not None:
            fields[i] = kind(*fields[i])
    return CanonicalEvent._make(fields)


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
    master: MasterKeys | None = None,
) -> tuple[int, str]:
    """Rebuild `db_path`'s projections in place, or into `to`; returns (events, path)."""
    path = to if to is not None else db_path
    raw = rawlog.raw_log_path(db_path)
    return rebuild(raw, path, until=until, progress=progress, master=master), path


def total_events(db_path: str) -> int:
    raw_path = rawlog.raw_log_path(db_path)
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as raw:
        return rawlog.last_offset(raw)
