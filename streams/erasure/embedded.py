"""Erasure in embedded mode: one transaction on the raw log, then the projections follow.

In one `BEGIN IMMEDIATE` transaction on `kycflow.raw.db` (the running writer waits on the
lock, then drops its cached keys: `key_generation`), for each subject:

- every delivery is reduced to the canonical event it had become (`reduced` table), rows
  from before encryption at rest get their body and headers blanked;
- quarantined deliveries that name the subject (its id or reference as a JSON string in
  the body) are reduced to nothing, with their own data keys;
- the subject's data keys are deleted (`secure_delete` zeroes them), the key generation is
  bumped, and the erasure record (`statemachines.reduced.erase_record`) is appended;
- one row is added to the audit trail (`audit`: counts and subject keys only).

A crash anywhere before COMMIT leaves the old log; after, the new one. The WAL is then
truncated so no old frame keeps a body or a key. The projections change by folding the
erasure record: the service's processor does it; with no service running, this takes the
processor's role (`projections.locking`) and folds the new records itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest import appending, rawlog
from ingest.sealing import MasterKeys
from projections.locking import DatabaseInUse, Role, claim
from projections.queries import SUBJECTS_WITH_REFERENCE
from projections.schema import open_projections
from projections.store import ProjectionStore
from statemachines.envelope import RawEnvelope
from statemachines.normalise import normalise, reduced_form
from statemachines.process import standing_transitions
from statemachines.reduced import CONTROL
from streams.erasure import Erased, Request, UnknownSubject, audit, record_of

log = logging.getLogger("kycflow.erasure")
BUSY_MS = 10_000  # the writer holds the lock for one group commit at a time: milliseconds
CHECKPOINT = """SELECT "offset" FROM checkpoint WHERE name = 'processor'"""  # projections.store
SETTLE = 30.0  # seconds to wait for a running service's processor to fold the erasure


def inside_transaction() -> None:
    """Called just before COMMIT; the crash test replaces it to kill the process there."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Facts:
    """What the projections know of one subject (read before the raw-log transaction)."""

    subject: str
    projected: bool = False  # a verifications row exists
    offsets: list[int] = field(default_factory=list)  # its deliveries, from subject_events
    needles: list[bytes] = field(default_factory=list)  # its id and references, JSON-quoted
    checkpoint: int = 0  # the processor's position: later rows are not in subject_events


@dataclass
class Plan:
    """The raw-log rows one subject's reduction touches."""

    subject: str
    deliveries: list[RawEnvelope]
    key_ids: list[int]
    dropped: list[RawEnvelope] = field(default_factory=list)
    dropped_keys: list[int] = field(default_factory=list)


def erase(request: Request, *, db_path: str, master: MasterKeys | None) -> list[Erased]:
    """Erase `request.subjects`; UnknownSubject (nothing written) if one is not known."""
    raw_path = rawlog.raw_log_path(db_path)
    if not raw_path.exists():
        raise UnknownSubject(request.subjects[0] if request.subjects else "")
    with _processor_role(db_path) as ours:
        facts = [facts_of(db_path, subject) for subject in request.subjects]
        results, last = _erase_in_raw_log(raw_path, request, facts, master, db_path)
        truncate_wal(raw_path)
        if ours:
            fold_new_records(db_path, raw_path, master)
        else:
            settle(db_path, last)
    return results


@contextlib.contextmanager
def _processor_role(db_path: str) -> Iterator[bool]:
    """True while we hold the processor's role (no service runs on this database)."""
    try:
        held = claim(db_path, Role.SERVE, Role.WRITER)
    except DatabaseInUse:
        yield False  # a service (or a replay) runs: its processor folds the erasure record
        return
    with held:
        yield True


def facts_of(db_path: str, subject: str) -> Facts:
    with projections(db_path) as db:
        return facts_from(db, subject)


def facts_from(db: sqlite3.Connection | None, subject: str) -> Facts:
    """What the projections (`db`, None if there are none) know of `subject`."""
    found = Facts(subject)
    quoted = [subject.split("/", 2)[-1]]
    if db is not None:
        row = db.execute(
            'SELECT reference, "references" FROM verifications WHERE subject = ?', (subject,)
        ).fetchone()
        if row is not None:
            found.projected = True
            quoted += [row[0], *json.loads(row[1])]
        point = db.execute(CHECKPOINT).fetchone()
        found.checkpoint = int(point[0]) if point else 0
        found.offsets = [
            int(r[0])
            for r in db.execute('SELECT "offset" FROM subject_events WHERE subject = ?', (subject,))
        ]
    found.needles = sorted({json.dumps(v, ensure_ascii=False).encode() for v in quoted if v})
    return found


@contextlib.contextmanager
def projections(db_path: str) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the projections, or None when there are none yet."""
    if not Path(db_path).is_file():
        yield None
        return
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("PRAGMA busy_timeout=5000")
        try:
            db.execute("SELECT 1 FROM verifications LIMIT 1")
        except sqlite3.OperationalError:  # not migrated yet: nothing projected
            yield None
            return
        yield db


def _erase_in_raw_log(
    raw_path: Path, request: Request, facts: list[Facts], master: MasterKeys | None, db_path: str
) -> tuple[list[Erased], int]:
    quarantined = _quarantined(db_path)
    with transaction(raw_path, master) as cur:
        plans = [plan(cur, one, quarantined) for one in facts]
        for one, made in zip(facts, plans, strict=True):
            if not (one.projected or one.offsets or made.deliveries or made.key_ids):
                raise UnknownSubject(one.subject)
        results, last = [], 0
        for made in plans:
            at = now_iso()
            wiped = _standing(cur, made) if request.scope == "all" else ()
            apply(cur, made, keep_reference=request.keep_reference, scope=request.scope)
            dropped = tuple(env.offset for env in made.dropped)
            record = record_of(request, made.subject, at, dropped=dropped, wiped=wiped)
            last = append_record(cur, record)
            keys = len(made.key_ids) + len(made.dropped_keys)
            results.append(Erased(made.subject, at, len(made.deliveries), len(made.dropped), keys))
        write_audit(cur, "erase", request.by, plans)
        inside_transaction()
    return results, last


@contextlib.contextmanager
def transaction(raw_path: Path, master: MasterKeys | None) -> Iterator[sqlite3.Cursor]:
    """One write transaction on the raw log: committed on success, else rolled back."""
    with contextlib.closing(rawlog.connect(raw_path, master=master)) as conn:
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        conn.executescript(audit.SCHEMA)
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise


def _quarantined(db_path: str) -> list[int]:
    with projections(db_path) as db:
        if db is None:
            return []
        return [int(r[0]) for r in db.execute('SELECT "offset" FROM quarantine')]


def plan(cur: sqlite3.Cursor, facts: Facts, quarantined: Iterable[int] = ()) -> Plan:
    """Inside the transaction: the subject's rows as they are now (the writer is held)."""
    conn = cur.connection
    key_ids = [
        int(r[0])
        for r in cur.execute("SELECT key_id FROM data_keys WHERE subject = ?", (facts.subject,))
    ]
    offsets = set(facts.offsets)
    if key_ids:
        marks = ",".join("?" * len(key_ids))
        found = cur.execute(f'SELECT "offset" FROM raw_log WHERE key_id IN ({marks})', key_ids)
        offsets |= {int(r[0]) for r in found}
    offsets |= _unprojected_clear_rows(cur, facts.subject, facts.checkpoint)
    deliveries = [e for e in rawlog.deliveries(conn, sorted(offsets)) if e.provider != CONTROL]
    made = Plan(facts.subject, deliveries, key_ids)
    if quarantined and facts.needles:
        _drop_quarantined(cur, made, quarantined, facts.needles)
    return made


def _unprojected_clear_rows(cur: sqlite3.Cursor, subject: str, after: int) -> set[int]:
    """Rows in the clear (KYCFLOW_ENCRYPTION=off) the processor has not reached yet."""
    found = cur.execute(
        'SELECT "offset" FROM raw_log WHERE "offset" > ? AND key_id IS NULL AND provider != ?',
        (after, CONTROL),
    )
    envelopes = rawlog.deliveries(cur.connection, [int(r[0]) for r in found])
    return {e.offset for e in envelopes if e.reduced is None and _subject_of(e) == subject}


def _subject_of(env: RawEnvelope) -> str | None:
    event = normalise(env)
    subject = getattr(event, "subject", None)
    return subject.key if subject is not None else None


def _drop_quarantined(
    cur: sqlite3.Cursor, made: Plan, quarantined: Iterable[int], needles: list[bytes]
) -> None:
    for env in rawlog.deliveries(cur.connection, sorted(quarantined)):
        if env.provider == CONTROL or env.reduced == "":
            continue
        if any(needle in env.body for needle in needles):
            made.dropped.append(env)
            own = cur.execute(
                "SELECT d.key_id FROM data_keys AS d JOIN raw_log AS r ON r.key_id = d.key_id "
                'WHERE r."offset" = ? AND d.subject = r.dedup_key',
                (env.offset,),
            ).fetchone()
            if own is not None:
                made.dropped_keys.append(int(own[0]))


def _standing(cur: sqlite3.Cursor, made: Plan) -> tuple[int, ...]:
    """Positions of the subject's transitions in the projections now (see erase_record):
    folded from its records, so it holds whether or not the processor has caught up."""
    needle = json.dumps(made.subject).encode()
    found = cur.execute(
        'SELECT "offset" FROM raw_log WHERE provider = ? AND instr(body, ?) > 0', (CONTROL, needle)
    )
    controls = [
        env
        for env in rawlog.deliveries(cur.connection, [int(r[0]) for r in found])
        if _subject_of(env) == made.subject
    ]
    records = sorted([*made.deliveries, *controls], key=lambda env: env.offset)
    return standing_transitions(records)


def apply(cur: sqlite3.Cursor, made: Plan, *, keep_reference: bool, scope: str) -> None:
    """Reduce the planned rows and destroy the keys (inside the caller's transaction).
    Scope "all" keeps no event: the decision trail goes too."""
    reduced = [
        (e.offset, reduced_form(e, keep_reference=keep_reference) if scope != "all" else "")
        for e in made.deliveries
    ]
    reduced += [(e.offset, "") for e in made.dropped]
    cur.executemany('INSERT OR REPLACE INTO reduced ("offset", event) VALUES (?, ?)', reduced)
    # Rows from before encryption at rest hold the body itself: blank it (zeroed on disk).
    cur.executemany(
        "UPDATE raw_log SET body = x'', headers = '{}' "
        'WHERE "offset" = ? AND key_id IS NULL AND length(body) > 0',
        [(offset,) for offset, _ in reduced],
    )
    keys = made.key_ids + made.dropped_keys
    cur.executemany("DELETE FROM data_keys WHERE key_id = ?", [(k,) for k in keys])
    if keys:
        cur.execute("UPDATE key_generation SET n = n + 1")  # the writer drops cached keys


def append_record(cur: sqlite3.Cursor, record: RawEnvelope) -> int:
    """Append a record kycflow writes itself, in the clear, as the writer appends rows."""
    return appending.insert_row(cur, appending.row_of(record)).offset


def write_audit(
    cur: sqlite3.Cursor, action: str, by: str, plans: list[Plan], keys: int = -1
) -> None:
    """One audit entry (`streams.erasure.audit`): what was done, when, by whom; subject
    keys and counts only."""
    if keys < 0:
        keys = sum(len(p.key_ids) + len(p.dropped_keys) for p in plans)
    deliveries = sum(len(p.deliveries) + len(p.dropped) for p in plans)
    subjects = tuple(p.subject for p in plans)
    audit.insert(cur, audit.Entry(now_iso(), action, by, subjects, deliveries, keys))


def truncate_wal(path: str | Path, attempts: int = 40) -> bool:
    """Checkpoint the WAL into the database and truncate it to nothing, so no old frame
    keeps what was just erased. Readers of an older snapshot hold it: retry briefly."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        return truncate(conn, attempts)


def truncate(conn: sqlite3.Connection, attempts: int = 40) -> bool:
    (patience,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute("PRAGMA busy_timeout=250")  # each attempt waits this long for readers
    try:
        for _ in range(attempts):
            if not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                return True
            time.sleep(0.05)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(patience)}")
    log.warning("could not truncate the WAL of %s now: readers hold it", Path(path_of(conn)).name)
    return False


def path_of(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""


def fold_new_records(db_path: str, raw_path: Path, master: MasterKeys | None) -> None:
    """The processor's work, done here while no service runs: fold what it has not."""
    db = open_projections(db_path)
    try:
        db.execute("PRAGMA secure_delete=ON")
        store = ProjectionStore(db)
        with contextlib.closing(rawlog.connect(raw_path, readonly=True, master=master)) as raw:
            offset = store.checkpoint()
            while envelopes := rawlog.read_after(raw, offset, 1000):
                store.process(envelopes)
                offset = envelopes[-1].offset
        truncate(db.conn)
    finally:
        db.conn.close()


def settle(db_path: str, offset: int, timeout: float = SETTLE) -> bool:
    """Wait for the running processor to fold up to `offset`, then truncate the
    projections' WAL (the processor also does, after folding an erasure record)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with projections(db_path) as db:
            row = db.execute(CHECKPOINT).fetchone() if db else None
        if row is not None and int(row[0]) >= offset:
            return truncate_wal(db_path)
        time.sleep(0.05)
    log.warning("the processor has not folded the erasure yet; it will when it catches up")
    return False


def subjects_with_reference(db_path: str, reference: str) -> tuple[str, ...]:
    """Every subject carrying this integrator reference, from the projections' index."""
    with projections(db_path) as db:
        if db is None:
            return ()
        rows = db.execute(SUBJECTS_WITH_REFERENCE, (reference, reference)).fetchall()
    return tuple(sorted(str(r[0]) for r in rows))


def rotate(db_path: str, master: MasterKeys, by: str = "cli") -> tuple[int, int]:
    """Rewrap every data key not under the first master key by it, in one transaction:
    (keys rewrapped, keys in all). Old wrapped values are zeroed (`secure_delete`)."""
    raw_path = rawlog.raw_log_path(db_path)
    with transaction(raw_path, master) as cur:
        old = cur.execute(
            "SELECT key_id, subject, master, wrapped FROM data_keys WHERE master != ?",
            (master.current,),
        ).fetchall()
        for key_id, subject, wrapped_by, wrapped in old:
            fresh = master.wrap(subject, master.unwrap(subject, wrapped_by, bytes(wrapped)))
            cur.execute(
                "UPDATE data_keys SET master = ?, wrapped = ? WHERE key_id = ?", (*fresh, key_id)
            )
        (total,) = cur.execute("SELECT count(*) FROM data_keys").fetchone()
        write_audit(cur, "rotate", by, [], keys=len(old))
    truncate_wal(raw_path)
    return len(old), int(total)
