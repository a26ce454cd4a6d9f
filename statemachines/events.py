"""Canonical events: what a provider webhook means, independent of who sent it.

A normaliser turns one raw envelope into exactly one `CanonicalEvent` (or an
`Unrecognised` with the reason, for the quarantine). The event carries its subject,
the status it asserts (None: history only), and the *ordering facts* the provider gave
(attempt, precedence class, provider time, lifecycle rank) from which the fold derives a
total order that does not depend on arrival.
"""

from __future__ import annotations

from typing import NamedTuple

from statemachines.envelope import RawEnvelope


class Subject(NamedTuple):
    provider: str
    kind: str
    id: str

    @property
    def key(self) -> str:
        """Stable string key: Kafka message key, table key, URL path."""
        return f"{self.provider}/{self.kind}/{self.id}"


# Precedence classes (design.md §5.3): manual decision > automatic final decision >
# terminal-without-decision (expired/canceled) > automatic preliminary result > progress.
# A resubmission opens a new attempt, which outranks every class of older attempts.
PROGRESS = 1
PRELIMINARY = 2
TERMINAL = 3
AUTO_DECISION = 4
MANUAL_DECISION = 5


class Order(NamedTuple):
    """The provider's own ordering information for one event.

    attempt: explicit attempt key (iDenfy `startTime`; 0 where a provider has no attempts),
      or None when the provider gives none and arrival decides (IDWise: the attempt open
      when the event arrives; `opens_attempt` starts the next one).
    klass: precedence class (above) or the lifecycle tier for ladder kinds.
    time: provider timestamp as an integer (Ondato createdUtc ticks, epoch seconds, an
      AML version number), 0 if none.
    rank: lifecycle position among events of the same class and time.
    """

    klass: int
    time: int = 0
    rank: int = 0
    attempt: int | None = 0
    opens_attempt: bool = False


class CanonicalEvent(NamedTuple):
    subject: Subject
    event_type: str  # the provider's name for it: header value, `type` or `event`
    status: str | None  # canonical status asserted; None = lands in history only
    order: Order
    dedup_key: str
    offset: int
    received_at: str
    final: bool = False
    decided_by: str | None = None  # "auto" | "manual" | None
    provider_status: str | None = None
    reasons: tuple[str, ...] = ()
    parent: Subject | None = None  # a kyb_document's KYB
    note: str | None = None  # why a history-only event carries no status
    recognised: bool = True  # False: an event type we do not know yet (kept in history)
    # The integrator's own ids for the subject (iDenfy clientId, Ondato externalReferenceId,
    # IDWise referenceNo): `reference` is the primary one, `references` every one it carries.
    reference: str | None = None
    references: tuple[str, ...] = ()
    # An erasure record (provider `kycflow`, `statemachines.reduced`): the scope erased
    # ("personal" or "all"), whether the reference stays, and the log positions of the
    # quarantined deliveries reduced to nothing with it. None/False/() for every other event.
    erase: str | None = None
    keep_reference: bool = False
    dropped: tuple[int, ...] = ()
    # An erasure of everything: log positions of the subject's transitions it deletes, so a
    # replay (which never makes them: their deliveries are reduced to nothing) numbers the
    # feed as the live processor did.
    wiped: tuple[int, ...] = ()


class Unrecognised(NamedTuple):
    """An envelope the core cannot read; it goes to the quarantine, with the reason."""

    provider: str
    reason: str
    offset: int
    dedup_key: str
    event_type: str | None = None


Normalised = CanonicalEvent | Unrecognised


def unrecognised(env: RawEnvelope, reason: str, event_type: str | None = None) -> Unrecognised:
    return Unrecognised(env.provider, reason, env.offset, env.dedup_key, event_type)


MAX_REFERENCE = 200  # longer values are not ids an integrator looks up; they are not kept
# Where `reference` and `references` sit in the record: `with_references` replaces the pair.
_REFERENCE = CanonicalEvent._fields.index("reference")
assert CanonicalEvent._fields[_REFERENCE + 1] == "references"


def with_references(normalised: Normalised, primary: str | None, *others: str | None) -> Normalised:
    """The event with the integrator's references the body carries (primary first)."""
    if not isinstance(normalised, CanonicalEvent):
        return normalised
    kept = primary if primary and len(primary) <= MAX_REFERENCE else None
    if others:
        found = tuple(
            dict.fromkeys(ref for ref in (primary, *others) if ref and len(ref) <= MAX_REFERENCE)
        )
    else:  # one candidate (IDWise, Ondato): nothing to deduplicate
        found = () if kept is None else (kept,)
    if not found:
        return normalised
    # Slices and _make: _replace goes through every field by keyword, 2.5x slower.
    head, tail = normalised[:_REFERENCE], normalised[_REFERENCE + 2 :]
    return CanonicalEvent._make((*head, kept, found, *tail))


def event(
    env: RawEnvelope,
    kind: str,
    subject_id: str,
    event_type: str,
    status: str | None,
    order: Order,
    *,
    final: bool = False,
    decided_by: str | None = None,
    provider_status: str | None = None,
    reasons: tuple[str, ...] = (),
    parent: Subject | None = None,
    note: str | None = None,
    recognised: bool = True,
) -> CanonicalEvent:
    """A canonical event for `env`, with the optional CanonicalEvent facts a provider reads."""
    # Positional: this runs for every webhook, and keywords cost twice as much here.
    return CanonicalEvent(
        Subject(env.provider, kind, subject_id),
        event_type,
        status,
        order,
        env.dedup_key,
        env.offset,
        env.received_at,
        final,
        decided_by,
        provider_status,
        reasons,
        parent,
        note,
        recognised,
    )


_HISTORY = Order(klass=0)  # shared: records are immutable


def history(
    env: RawEnvelope,
    kind: str,
    subject_id: str,
    event_type: str,
    note: str,
    *,
    recognised: bool = True,
    provider_status: str | None = None,
) -> CanonicalEvent:
    """An event that carries no status but belongs in the subject's history."""
    return event(
        env,
        kind,
        subject_id,
        event_type,
        None,
        _HISTORY,
        note=note,
        recognised=recognised,
        provider_status=provider_status,
    )
