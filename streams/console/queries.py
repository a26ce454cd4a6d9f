"""Read-only SQL the console needs beyond projections.queries: overview aggregates, search
by provider id, recent deliveries, the quarantine. Every query is an indexed lookup or a
bounded scan of an index, so pages stay fast on a large database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from projections.queries import VERIFICATION_FIELDS, Connection, columns, rows
from statemachines.envelope import PROVIDERS
from statemachines.machines import KINDS

# Statuses in which a verification waits for someone (a reviewer, the applicant).
WAITING = ("in_review", "submitted", "need_review", "info_requested")
RECENT = 20
WAITING_CAP = 1000


def _in(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def counts(db: Connection) -> list[dict[str, Any]]:
    """Verifications per provider, kind and status (a scan of the covering status index)."""
    return rows(
        db,
        "SELECT provider, kind, status, COUNT(*) AS n FROM verifications "
        "GROUP BY provider, kind, status ORDER BY provider, kind, status",
    )


def stamp(moment: datetime) -> str:
    """A time as ingest writes `received_at`, so it compares with stored times as text."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def waiting(db: Connection, older_than: timedelta, now: datetime) -> list[dict[str, Any]]:
    """The longest-waiting verifications not changed for `older_than`, oldest first."""
    return rows(
        db,
        f"SELECT provider, kind, id, status, updated_at, erased_at FROM verifications "
        f"WHERE provider IN ({_in(PROVIDERS)}) AND kind IN ({_in(KINDS)}) "
        f"AND status IN ({_in(WAITING)}) AND updated_at < ? ORDER BY updated_at LIMIT ?",
        (*PROVIDERS, *KINDS, *WAITING, stamp(now - older_than), RECENT),
    )


def waiting_count(
    db: Connection, older_than: timedelta, now: datetime, cap: int = WAITING_CAP
) -> int:
    """How many wait, counted up to `cap` (cap + 1 means "more"): each one costs a row
    read, and the overview must stay fast however large the backlog grows."""
    row = db.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM verifications "
        f"WHERE provider IN ({_in(PROVIDERS)}) AND kind IN ({_in(KINDS)}) "
        f"AND status IN ({_in(WAITING)}) AND updated_at < ? LIMIT ?)",
        (*PROVIDERS, *KINDS, *WAITING, stamp(now - older_than), cap + 1),
    ).fetchone()
    return int(row[0])


def quarantine_size(db: Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])


def recent_transitions(db: Connection, limit: int = RECENT) -> list[dict[str, Any]]:
    """The newest transitions, each with its subject's `erased_at` (a primary-key lookup)."""
    found = rows(
        db,
        'SELECT t.seq, t.subject, t.from_status, t.to_status, t."trigger", t.event_type, '
        "t.received_at, v.erased_at FROM transitions AS t "
        "LEFT JOIN verifications AS v ON v.subject = t.subject ORDER BY t.seq DESC LIMIT ?",
        (limit,),
    )
    for row in found:
        row["provider"], row["kind"], row["id"] = row.pop("subject").split("/", 2)
    return found


def by_provider_id(db: Connection, id: str, provider: str | None = None) -> list[dict[str, Any]]:
    """Every subject with this provider id, whatever its kind: primary-key lookups only."""
    subjects = [f"{p}/{k}/{id}" for p in PROVIDERS if provider in (None, p) for k in KINDS]
    return rows(
        db,
        f"SELECT {columns(VERIFICATION_FIELDS)} FROM verifications "
        f"WHERE subject IN ({_in(tuple(subjects))}) ORDER BY updated_at DESC",
        tuple(subjects),
    )


def deliveries(db: Connection, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The latest deliveries by raw log offset: those that reached a subject and those
    quarantined, newest first."""
    bound = "" if before is None else 'WHERE "offset" < ?'
    params: tuple[Any, ...] = () if before is None else (before,)
    return rows(
        db,
        f'SELECT * FROM (SELECT "offset", received_at, event_type, subject, effect, reason, '
        f"NULL AS provider FROM subject_events {bound} "
        f"UNION ALL SELECT \"offset\", received_at, event_type, NULL, 'quarantined', reason, "
        f"provider FROM quarantine {bound}) "
        f'ORDER BY "offset" DESC LIMIT ?',
        (*params, *params, limit),
    )


def delivery(db: Connection, offset: int) -> dict[str, Any] | None:
    """What one delivery did: its subject and effect, or its quarantine reason."""
    found = rows(
        db,
        'SELECT "offset", subject, event_type, effect, reason, received_at FROM subject_events '
        'WHERE "offset" = ? UNION ALL SELECT "offset", NULL, event_type, \'quarantined\', '
        'reason, received_at FROM quarantine WHERE "offset" = ?',
        (offset, offset),
    )
    return found[0] if found else None


def quarantined(db: Connection, limit: int = 200) -> list[dict[str, Any]]:
    return rows(
        db,
        'SELECT "offset", provider, reason, event_type, dedup_key, received_at FROM quarantine '
        'ORDER BY "offset" DESC LIMIT ?',
        (limit,),
    )


RATE_WINDOW = 10_000  # newest deliveries looked at for the rate: a bounded index scan


def recent_rate(db: Connection, now: datetime, seconds: int = 60) -> int:
    """Deliveries applied with a receive time in the last `seconds`, among the newest
    RATE_WINDOW by raw offset (offsets follow receive order, so that is where they are)."""
    since = stamp(now - timedelta(seconds=seconds))
    row = db.execute(
        'SELECT (SELECT COUNT(*) FROM (SELECT received_at FROM subject_events ORDER BY "offset" '
        "DESC LIMIT ?) WHERE received_at >= ?) + (SELECT COUNT(*) FROM (SELECT received_at "
        'FROM quarantine ORDER BY "offset" DESC LIMIT ?) WHERE received_at >= ?)',
        (RATE_WINDOW, since, RATE_WINDOW, since),
    ).fetchone()
    return int(row[0])
