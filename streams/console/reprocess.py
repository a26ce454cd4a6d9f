"""Reprocessing the quarantine after a fix: what the current code makes of each delivery,
and re-delivering the ones it can now read.

The projections have one writer (the processor, or Kafka mode's worker and projector), so
the console never writes them: a readable delivery is appended to the raw log again, as a
provider's retry would be, and the processor folds it like any other. Re-delivering is
idempotent: the fold keeps a digest of every delivery it applied, so a delivery already
reprocessed is reported as such and never appended twice; a replay of the raw log reaches
the same state (the later copy is then a duplicate).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ingest.appending import Receipt
from projections.queries import Connection, subject_key
from statemachines import CanonicalEvent, RawEnvelope, normalise

READ, DONE, UNREADABLE, MISSING = "readable", "reprocessed", "unreadable", "missing"
ERASED = "erased"  # the body is gone (erasure, a destroyed data key): nothing to re-deliver


class Appender(Protocol):
    async def append(self, env: RawEnvelope) -> Receipt: ...


class Assessment(NamedTuple):
    offset: int
    state: str  # READ (can be reprocessed), DONE, UNREADABLE, MISSING (no raw body), ERASED
    subject: str | None  # provider/kind/id the current code routes it to
    reason: str | None  # why it is still unreadable
    envelope: RawEnvelope | None


def digest(dedup_key: str) -> bytes:
    """The fold's compact dedup entry for a delivery (as statemachines.fold computes it)."""
    return hashlib.blake2b(dedup_key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def folded(db: Connection, subject: str, dedup_key: str) -> bool:
    """Whether the subject's fold has applied this delivery (its digest is in fold_seen)."""
    row = db.execute("SELECT fold_seen FROM verifications WHERE subject = ?", (subject,)).fetchone()
    if row is None or row[0] is None:
        return False
    seen, wanted = bytes(row[0]), digest(dedup_key)
    return any(seen[i : i + 8] == wanted for i in range(0, len(seen), 8))


def assess(
    db: Connection, rows: list[dict[str, Any]], envelopes: dict[int, RawEnvelope]
) -> list[Assessment]:
    """What the current code makes of each quarantined delivery."""
    found = []
    for row in rows:
        env = envelopes.get(row["offset"])
        if env is None:
            found.append(Assessment(row["offset"], MISSING, None, None, None))
            continue
        if env.reduced is not None:  # re-delivering it would append an empty body
            found.append(Assessment(row["offset"], ERASED, None, "personal data erased", env))
            continue
        event = normalise(env)
        if not isinstance(event, CanonicalEvent):
            found.append(Assessment(row["offset"], UNREADABLE, None, event.reason, env))
            continue
        subject = subject_key(*event.subject)
        state = DONE if folded(db, subject, event.dedup_key) else READ
        found.append(Assessment(row["offset"], state, subject, None, env))
    return found


async def redeliver(
    assessments: list[Assessment], appender: Appender, clock: Callable[[], str]
) -> dict[int, int]:
    """Append every readable delivery again; {quarantined offset: new raw offset}."""
    done = {}
    for item in assessments:
        if item.state == READ and item.envelope is not None:
            env = dataclasses.replace(item.envelope, received_at=clock(), offset=-1)
            receipt = await appender.append(env)
            done[item.offset] = receipt.offset
    return done


def outcome(db: Connection, offset: int) -> dict[str, Any] | None:
    """What the processor did with a raw offset, once it has: its subject event or its
    quarantine row; None while it is not applied yet."""
    row = db.execute(
        'SELECT subject, effect, reason FROM subject_events WHERE "offset" = ?', (offset,)
    ).fetchone()
    if row is not None:
        return {"subject": row[0], "effect": row[1], "reason": row[2]}
    row = db.execute('SELECT reason FROM quarantine WHERE "offset" = ?', (offset,)).fetchone()
    return None if row is None else {"subject": None, "effect": "quarantined", "reason": row[0]}
