"""Retention of raw personal data by policy (KYCFLOW_RETENTION), in embedded mode.

    final+30d   the raw bodies of a subject with a final status, 30 days after its last event
    last+90d    the raw bodies of any subject, 90 days after its last event
    off         keep them (the default: AML record keeping may oblige you to)

Units: d, h, m, s; the amount may be fractional. A due subject's deliveries are reduced as
an erasure reduces them (`streams.erasure.embedded`) — the events are kept, the reference
too, its data keys destroyed — but it is not an erasure: no erasure record, no `erased_at`,
the projections do not change and replay folds the kept events to the same rows. Each run
adds one row to the raw log's `audit` table.

The running service applies the policy every KYCFLOW_RETENTION_INTERVAL seconds (default
3600) from a thread of its processor process (`run_continuously`); `kycflow retention`
applies it on demand.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from ingest import rawlog
from ingest.sealing import MasterKeys
from statemachines.reduced import CONTROL
from streams.erasure import embedded
from streams.erasure.embedded import Facts, Plan

RETENTION = "KYCFLOW_RETENTION"
RETENTION_INTERVAL = "KYCFLOW_RETENTION_INTERVAL"
UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
_POLICY = re.compile(r"(final|last)\+(\d+(?:\.\d+)?)([dhms])")
BATCH = 200  # subjects per transaction: the writer waits at most for one batch
log = logging.getLogger("kycflow.retention")


@dataclass(frozen=True)
class Policy:
    basis: str  # "final": final subjects only; "last": any subject
    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text

    def cutoff(self, now: datetime) -> str:
        """Subjects whose last event was received before this are due."""
        return (now - timedelta(seconds=self.seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def due_subjects(self, db_path: str) -> list[str]:
        """The subjects due now (Kafka mode's retention asks this way)."""
        return due(db_path, self, datetime.now(UTC))


def parse(text: str) -> Policy | None:
    """`final+30d`, `last+90d`, …; None for `off` (or nothing)."""
    raw = text.strip().lower()
    if raw in {"", "off"}:
        return None
    found = _POLICY.fullmatch(raw)
    if found is None:
        raise ValueError(
            f"{RETENTION} must be off, final+N or last+N with a unit d, h, m or s "
            f"(e.g. final+30d), not {text!r}"
        )
    basis, amount, unit = found.groups()
    return Policy(basis, float(amount) * UNITS[unit], raw)


def from_config(config: Mapping[str, str]) -> tuple[Policy | None, float]:
    """(the policy, seconds between runs); ValueError names a malformed setting."""
    policy = parse(config.get(RETENTION, ""))
    raw = config.get(RETENTION_INTERVAL, "").strip() or "3600"
    try:
        interval = float(raw)
    except ValueError:
        interval = 0.0
    if not 0 < interval <= 31 * 86_400:
        raise ValueError(f"{RETENTION_INTERVAL} must be a number of seconds, not {raw!r}")
    return policy, interval


def due(db_path: str, policy: Policy, now: datetime) -> list[str]:
    """Subjects past the policy, from the projections (erased ones included: filtered later
    by what they still hold)."""
    where = "updated_at < ?" + (" AND final = 1" if policy.basis == "final" else "")
    with embedded.projections(db_path) as db:
        if db is None:
            return []
        rows = db.execute(f"SELECT subject FROM verifications WHERE {where}", (policy.cutoff(now),))
        return [str(r[0]) for r in rows]


def run(
    policy: Policy,
    *,
    db_path: str,
    master: MasterKeys | None,
    dry_run: bool = False,
    by: str = "retention",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Apply the policy once (or, `dry_run`, only count); what it reduced, as JSON."""
    now = now or datetime.now(UTC)
    report: dict[str, Any] = {
        "policy": str(policy),
        "cutoff": policy.cutoff(now),
        "dry_run": dry_run,
        "subjects": 0,
        "deliveries": 0,
        "keys": 0,
    }
    raw_path = rawlog.raw_log_path(db_path)
    subjects = due(db_path, policy, now)
    if not subjects or not raw_path.exists():
        return report
    for start in range(0, len(subjects), BATCH):
        plans = _reduce(raw_path, db_path, subjects[start : start + BATCH], master, dry_run, by)
        report["subjects"] += len(plans)
        report["deliveries"] += sum(len(p.deliveries) for p in plans)
        report["keys"] += sum(len(p.key_ids) for p in plans)
    if report["subjects"] and not dry_run:
        embedded.truncate_wal(raw_path)
    return report


def _reduce(
    raw_path: Path,
    db_path: str,
    subjects: list[str],
    master: MasterKeys | None,
    dry_run: bool,
    by: str,
) -> list[Plan]:
    with embedded.projections(db_path) as db:
        facts = [embedded.facts_from(db, subject) for subject in subjects]
    with _transaction(raw_path, master, write=not dry_run) as cur:
        keyed = _keyed(cur, subjects)
        plans = [
            made
            for one in facts
            if one.subject in keyed or _clear_rows(cur, one.offsets)
            if (made := _plan(cur, one)) is not None
        ]
        if plans and not dry_run:
            for made in plans:
                embedded.apply(cur, made, keep_reference=True, scope="personal")
            embedded.write_audit(cur, "retention", by, plans)
    return plans


@contextlib.contextmanager
def _transaction(
    raw_path: Path, master: MasterKeys | None, *, write: bool
) -> Iterator[sqlite3.Cursor]:
    if write:
        with embedded.transaction(raw_path, master) as cur:
            yield cur
        return
    with contextlib.closing(rawlog.connect(raw_path, readonly=True, master=master)) as conn:
        cur = conn.cursor()
        cur.execute("BEGIN")  # one snapshot for the count
        try:
            yield cur
        finally:
            cur.execute("ROLLBACK")


def _keyed(cur: sqlite3.Cursor, subjects: list[str]) -> set[str]:
    """Those of `subjects` that still have a data key."""
    marks = ",".join("?" * len(subjects))
    sql = f"SELECT DISTINCT subject FROM data_keys WHERE subject IN ({marks})"
    return {str(r[0]) for r in cur.execute(sql, subjects)}


def _clear_rows(cur: sqlite3.Cursor, offsets: list[int]) -> bool:
    """Whether any of these deliveries is a row in the clear (a log from before encryption
    at rest, or KYCFLOW_ENCRYPTION=off) not reduced yet."""
    if not offsets:
        return False
    marks = ",".join("?" * len(offsets))
    found = cur.execute(
        f'SELECT 1 FROM {rawlog.FROM} WHERE r."offset" IN ({marks}) AND r.key_id IS NULL '
        "AND d.event IS NULL AND length(r.body) > 0 AND r.provider != ? LIMIT 1",
        (*offsets, CONTROL),
    )
    return found.fetchone() is not None


def _plan(cur: sqlite3.Cursor, facts: Facts) -> Plan | None:
    made = embedded.plan(cur, facts)
    made.deliveries = [e for e in made.deliveries if e.reduced is None]  # not twice
    return made if made.deliveries or made.key_ids else None


class Stop(Protocol):
    def is_set(self) -> bool: ...


def run_continuously(
    policy: Policy,
    interval: float,
    *,
    db_path: str,
    master: MasterKeys | None,
    stop: Stop,
    reduced: Callable[[int], None],
) -> None:
    """Apply the policy now and every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            report = run(policy, db_path=db_path, master=master)
        except Exception as exc:  # the next run retries; the service keeps serving
            log.error("retention run failed: %s: %s", type(exc).__name__, exc)
        else:
            if report["deliveries"]:
                log.info(
                    "retention %s reduced %d deliveries of %d subjects",
                    policy,
                    report["deliveries"],
                    report["subjects"],
                )
                reduced(report["deliveries"])
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(min(0.5, interval))


def start(
    policy: Policy,
    interval: float,
    *,
    db_path: str,
    master: MasterKeys | None,
    stop: Stop,
    reduced: Callable[[int], None],
) -> threading.Thread:
    """`run_continuously` in a daemon thread (of the processor process)."""
    thread = threading.Thread(
        target=run_continuously,
        args=(policy, interval),
        kwargs={"db_path": db_path, "master": master, "stop": stop, "reduced": reduced},
        name="retention",
        daemon=True,
    )
    thread.start()
    return thread
