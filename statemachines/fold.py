"""The fold: (subject state, canonical event) -> (new state, what happened).

Why the result does not depend on arrival order: every event gets a precedence key
`(absorbing, attempt, class, provider time, lifecycle rank, log offset)` and the status
is always that of the greatest key seen — a maximum, which is commutative, associative
and idempotent. Dedup by delivery key makes duplicates no-ops. The log offset is the
last-resort tiebreak between events the provider's data does not order (two manual
decisions of one iDenfy attempt, IDWise events of one lifecycle step); everything else
in the key comes from the providers. Counters are set functions too: `version` counts
distinct events, `attempt` counts distinct attempt keys, `updated_at` is the latest
receive time, and the integrator's `reference` is the smallest one any event carried.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, insort
from typing import Any, NamedTuple

from statemachines.events import CanonicalEvent, Subject
from statemachines.machines import lifecycle

Key = tuple[int, int, int, int, int, int]
MAX_REFERENCES = 8  # bounds the state whatever a provider sends
# What a winning event asserts: status, final, decided_by, attempt, provider status, reasons.
Claim = tuple[str, bool, str | None, int, str | None, tuple[str, ...]]


class SubjectState(NamedTuple):
    """Everything known about one subject; also its projection row."""

    subject: Subject
    status: str | None = None
    final: bool = False
    decided_by: str | None = None
    attempt: int = 0  # 1, 2 … for the attempt the current status belongs to; 0: none yet
    provider_status: str | None = None
    reasons: tuple[str, ...] = ()
    version: int = 0
    updated_at: str | None = None
    cause_event: str | None = None
    cause_offset: int | None = None
    parent: Subject | None = None
    winner: Key | None = None  # precedence key of the event that set the status
    attempt_keys: tuple[int, ...] = ()  # distinct attempt keys of status-bearing events
    seen: bytes = b""  # 8-byte digests of the dedup keys folded in (compact dedup set)
    # The integrator's ids, set functions of the events like everything above: the smallest
    # primary reference any event carried, and the smallest MAX_REFERENCES of all of them.
    reference: str | None = None
    references: tuple[str, ...] = ()
    # Erasure (statemachines.reduced): the receive time of the latest erasure record folded
    # in, and the log position of the latest one of scope "all" — the subject's projection
    # rows from before it are gone (a projector that lags behind deletes them then).
    erased_at: str | None = None
    erased_before: int | None = None

    def public(self) -> dict[str, Any]:
        """The projection as plain JSON-safe data (API, status topic, verifications row)."""
        return {
            "provider": self.subject.provider,
            "kind": self.subject.kind,
            "id": self.subject.id,
            "reference": self.reference,
            "references": list(self.references),
            "status": self.status,
            "final": self.final,
            "decided_by": self.decided_by,
            "attempt": self.attempt,
            "provider_status": self.provider_status,
            "reasons": list(self.reasons),
            "version": self.version,
            "updated_at": self.updated_at,
            "cause_event": self.cause_event,
            "cause_offset": self.cause_offset,
            "parent_kind": self.parent.kind if self.parent else None,
            "parent_id": self.parent.id if self.parent else None,
            "erased_at": self.erased_at,
        }


class Transition(NamedTuple):
    """A change of the subject's status or decision, with the event that caused it."""

    subject: Subject
    version: int
    from_status: str | None
    to_status: str
    trigger: str
    attempt: int
    final: bool
    decided_by: str | None
    event_type: str
    dedup_key: str
    offset: int
    received_at: str
    provider_status: str | None
    reasons: tuple[str, ...]


# Why an event changed no status.
DUPLICATE = "duplicate"  # the same delivery was folded in before
LATE = "late"  # outranked by an event of the same attempt already applied
SUPERSEDED = "superseded"  # belongs to an older attempt, or the subject was deleted
UNCHANGED = "unchanged"  # won precedence but asserts what is already recorded
HISTORY = "history"  # carries no status (data update, step, AML review …)
UNKNOWN = "unknown"  # an event type we do not know yet; kept for replay after a fix
ILLEGAL = "illegal"  # the lifecycle table has no such step (a bug; never for valid data)
ERASURE = "erased"  # an erasure record: the subject's personal data (or everything) dropped


class Annotation(NamedTuple):
    subject: Subject
    version: int
    kind: str
    reason: str
    event_type: str
    dedup_key: str
    offset: int
    received_at: str
    dropped: tuple[int, ...] = ()  # an erasure's: quarantine rows (log positions) to delete


Effect = Transition | Annotation


class Outcome(NamedTuple):
    state: SubjectState
    effect: Effect

    @property
    def status_changed(self) -> bool:
        return isinstance(self.effect, Transition)


def initial(subject: Subject) -> SubjectState:
    return SubjectState(subject=subject)


def fold(state: SubjectState | None, event: CanonicalEvent) -> Outcome:
    """Apply one canonical event to its subject's state. Pure and total."""
    state = state if state is not None else initial(event.subject)
    key = event.dedup_key.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    if _seen(state.seen, digest):
        return Outcome(state, _note(state, event, DUPLICATE, "this delivery was already applied"))
    if event.erase is not None:
        return _erase(state, event, digest)
    if event.status is None:
        kind = HISTORY if event.recognised else UNKNOWN
        after = _next(state, event, digest, state.attempt_keys, state.attempt, None)
        return Outcome(after, _note(after, event, kind, event.note or "carries no status"))
    return _contend(state, event, digest)


def _contend(state: SubjectState, event: CanonicalEvent, digest: bytes) -> Outcome:
    assert event.status is not None
    cycle = lifecycle(event.subject.kind)
    attempt_key = _attempt_key(state, event)
    keys, attempt = state.attempt_keys, state.attempt
    if attempt_key not in keys:
        grown = list(keys)
        insort(grown, attempt_key)
        keys = tuple(grown)
        if state.winner is not None:  # an earlier attempt surfaced late: renumber
            attempt = bisect_left(keys, state.winner[1]) + 1
    key: Key = (
        int(event.status in cycle.absorbing),
        attempt_key,
        event.order.klass,
        event.order.time,
        event.order.rank,
        event.offset,
    )
    if state.winner is not None and key < state.winner:
        after = _next(state, event, digest, keys, attempt, None)
        return Outcome(after, _outranked(after, event, key))
    destination = cycle.next_status(state.status, event.status)
    if destination is None:
        after = _next(state, event, digest, keys, attempt, None)
        reason = f"no {cycle.kind} step from {state.status or 'new'} to {event.status}"
        return Outcome(after, _note(after, event, ILLEGAL, reason))
    claim = (
        destination,
        event.final,
        event.decided_by,
        bisect_left(keys, attempt_key) + 1,
        event.provider_status,
        event.reasons,
    )
    after = _next(state, event, digest, keys, claim[3], (claim, key))
    if claim == (
        state.status,
        state.final,
        state.decided_by,
        state.attempt,
        state.provider_status,
        state.reasons,
    ):
        return Outcome(after, _note(after, event, UNCHANGED, "asserts the recorded status"))
    return Outcome(after, _transition(after, event, state.status, cycle.triggers[destination]))


def _next(
    state: SubjectState,
    event: CanonicalEvent,
    digest: bytes,
    attempt_keys: tuple[int, ...],
    attempt: int,
    win: tuple[Claim, Key] | None,
) -> SubjectState:
    """The one place a successor state is built: one constructor call per event."""
    if win is None:
        status, final, decided_by = state.status, state.final, state.decided_by
        provider_status, reasons, winner = state.provider_status, state.reasons, state.winner
        cause_event, cause_offset = state.cause_event, state.cause_offset
    else:
        (status, final, decided_by, attempt, provider_status, reasons), winner = win
        cause_event, cause_offset = event.event_type, event.offset
    return SubjectState(
        state.subject,
        status,
        final,
        decided_by,
        attempt,
        provider_status,
        reasons,
        state.version + 1,
        max(state.updated_at or "", event.received_at),
        cause_event,
        cause_offset,
        state.parent or event.parent,
        winner,
        attempt_keys,
        state.seen + digest,
        *_references(state, event),
        state.erased_at,
        state.erased_before,
    )


def _erase(state: SubjectState, event: CanonicalEvent, digest: bytes) -> Outcome:
    """An erasure record. Scope "all": the subject starts afresh, as a replay finds it (its
    deliveries are then reduced to nothing, so only this record is left to fold). Scope
    "personal": the decision trail stays; the references go unless kept. Not a set
    function of the log like the rest: it applies to what was folded before it, in log
    order, which replay keeps."""
    if event.erase == "all":
        after = SubjectState(
            state.subject,
            version=1,
            updated_at=event.received_at,  # never NULL in a row: listings page by it
            seen=digest,
            erased_at=event.received_at,
            erased_before=event.offset,
        )
        reason = f"everything erased, decision trail included ({event.note or 'erased'})"
    else:
        after = _next(state, event, digest, state.attempt_keys, state.attempt, None)
        after = after._replace(erased_at=event.received_at)
        if not event.keep_reference:
            after = after._replace(reference=None, references=())
        kept = ", reference kept" if event.keep_reference else ""
        reason = f"personal data erased{kept} ({event.note or 'erased'})"
    note = _note(after, event, ERASURE, reason)._replace(dropped=event.dropped)
    return Outcome(after, note)


def _references(state: SubjectState, event: CanonicalEvent) -> tuple[str | None, tuple[str, ...]]:
    """Minimum and bounded sorted union: order- and duplicate-free, so replay reproduces them."""
    if not event.references:
        return state.reference, state.references
    primaries = [ref for ref in (state.reference, event.reference) if ref is not None]
    merged = sorted(set(state.references).union(event.references))[:MAX_REFERENCES]
    return min(primaries, default=None), tuple(merged)


def _attempt_key(state: SubjectState, event: CanonicalEvent) -> int:
    if event.order.attempt is not None:
        return event.order.attempt
    # No provider attempt data (IDWise): the event belongs to the attempt open on arrival.
    current = state.attempt_keys[-1] if state.attempt_keys else 0
    return current + 1 if event.order.opens_attempt else current


def _outranked(state: SubjectState, event: CanonicalEvent, key: Key) -> Annotation:
    assert state.winner is not None
    if state.winner[0] > key[0]:
        return _note(state, event, SUPERSEDED, f"the subject is {state.status}; that absorbs")
    if state.winner[1] > key[1]:
        return _note(state, event, SUPERSEDED, "belongs to an earlier attempt")
    reason = f"outranked by {state.cause_event} at offset {state.cause_offset}"
    return _note(state, event, LATE, reason)


def _seen(seen: bytes, digest: bytes) -> bool:
    return any(seen[i : i + 8] == digest for i in range(0, len(seen), 8))


def _note(state: SubjectState, event: CanonicalEvent, kind: str, reason: str) -> Annotation:
    return Annotation(
        subject=state.subject,
        version=state.version,
        kind=kind,
        reason=reason,
        event_type=event.event_type,
        dedup_key=event.dedup_key,
        offset=event.offset,
        received_at=event.received_at,
    )


def _transition(
    state: SubjectState, event: CanonicalEvent, previous: str | None, trigger: str
) -> Transition:
    assert state.status is not None
    return Transition(
        subject=state.subject,
        version=state.version,
        from_status=previous,
        to_status=state.status,
        trigger=trigger,
        attempt=state.attempt,
        final=state.final,
        decided_by=state.decided_by,
        event_type=event.event_type,
        dedup_key=event.dedup_key,
        offset=event.offset,
        received_at=event.received_at,
        provider_status=event.provider_status,
        reasons=event.reasons,
    )
