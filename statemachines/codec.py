"""JSON-safe forms of states and effects, for Faust tables, topics and SQLite rows.

Each record carries a stable `type` name, never a module path, so stored data does not
depend on where classes live.
"""

from __future__ import annotations

import base64
from typing import Any

from statemachines.envelope import RawEnvelope
from statemachines.events import Normalised, Subject, Unrecognised
from statemachines.fold import DUPLICATE, Annotation, Effect, Outcome, SubjectState, Transition
from statemachines.reduced import ERASED


def state_to_dict(state: SubjectState) -> dict[str, Any]:
    data = state._asdict()
    data["subject"] = state.subject.key
    data["parent"] = state.parent.key if state.parent else None
    data["seen"] = base64.b64encode(state.seen).decode("ascii")
    data["reasons"] = list(state.reasons)
    data["winner"] = list(state.winner) if state.winner else None
    data["attempt_keys"] = list(state.attempt_keys)
    data["references"] = list(state.references)
    return data


def state_from_dict(data: dict[str, Any]) -> SubjectState:
    winner = data.get("winner")
    return SubjectState(
        subject=subject_from_key(data["subject"]),
        status=data.get("status"),
        final=bool(data.get("final")),
        decided_by=data.get("decided_by"),
        attempt=int(data.get("attempt", 0)),
        provider_status=data.get("provider_status"),
        reasons=tuple(data.get("reasons", ())),
        version=int(data.get("version", 0)),
        updated_at=data.get("updated_at"),
        cause_event=data.get("cause_event"),
        cause_offset=data.get("cause_offset"),
        parent=subject_from_key(data["parent"]) if data.get("parent") else None,
        winner=tuple(int(x) for x in winner) if winner else None,  # type: ignore[arg-type]
        attempt_keys=tuple(int(x) for x in data.get("attempt_keys", ())),
        seen=base64.b64decode(data.get("seen", "")),
        reference=data.get("reference"),
        references=tuple(data.get("references", ())),
        erased_at=data.get("erased_at"),
        erased_before=data.get("erased_before"),
    )


def subject_from_key(key: str) -> Subject:
    provider, kind, subject_id = key.split("/", 2)
    return Subject(provider, kind, subject_id)


def effect_to_dict(effect: Effect) -> dict[str, Any]:
    data = effect._asdict()
    data["subject"] = effect.subject.key
    data["type"] = "transition" if isinstance(effect, Transition) else "annotation"
    if isinstance(effect, Transition):
        data["reasons"] = list(effect.reasons)
    elif effect.dropped:
        data["dropped"] = list(effect.dropped)
    else:  # only erasures drop anything: the other annotations go without the field
        del data["dropped"]
    return data


def effect_from_dict(data: dict[str, Any]) -> Effect:
    """Inverse of `effect_to_dict`; raises KeyError/ValueError on a malformed record."""
    fields = {name: data[name] for name in _EFFECT_FIELDS[data["type"]]}
    fields["subject"] = subject_from_key(data["subject"])
    if data["type"] == "transition":
        fields["reasons"] = tuple(fields["reasons"])
        return Transition(**fields)
    return Annotation(**fields, dropped=tuple(int(n) for n in data.get("dropped", ())))


# The fields every record has; an annotation's `dropped` (its last) is there only when set.
_EFFECT_FIELDS = {"transition": Transition._fields, "annotation": Annotation._fields[:-1]}


def status_record(state: SubjectState) -> dict[str, Any]:
    """A subject's state as published on `kycflow.status`: the public projection first
    (what subscribers read), plus `subject` and the fold's bookkeeping under `fold`, so a
    projector rebuilds exactly the row the embedded processor writes."""
    record = state.public()
    record["subject"] = state.subject.key
    record["fold"] = {
        "winner": list(state.winner) if state.winner else None,
        "attempt_keys": list(state.attempt_keys),
        "seen": base64.b64encode(state.seen).decode("ascii"),
        # Set once the subject was erased with scope "all": a projector deletes the
        # subject's rows from before this log position (see projections.topics).
        "erased_before": state.erased_before,
    }
    return record


def state_from_status_record(record: dict[str, Any]) -> SubjectState:
    """Inverse of `status_record`."""
    fold = record["fold"]
    subject = subject_from_key(record["subject"])
    parent = (
        Subject(subject.provider, record["parent_kind"], record["parent_id"])
        if record.get("parent_kind")
        else None
    )
    return state_from_dict(
        {
            **record,
            "parent": parent.key if parent else None,
            "winner": fold["winner"],
            "attempt_keys": fold["attempt_keys"],
            "seen": fold["seen"],
            "erased_before": fold.get("erased_before"),
        }
    )


QUARANTINE_FIELDS = ("offset", "provider", "reason", "event_type", "dedup_key", "received_at")


def quarantine_record(env: RawEnvelope, unrecognised: Unrecognised | None) -> dict[str, Any]:
    """An envelope the core could not read, as published on the quarantine topic."""
    return {
        "offset": env.offset,
        "provider": env.provider,
        "reason": unrecognised.reason if unrecognised else "unrecognised",
        "event_type": unrecognised.event_type if unrecognised else None,
        "dedup_key": env.dedup_key,
        "received_at": env.received_at,
    }


# Kafka mode's output topics, by the suffix of their name.
STATUS, TRANSITIONS, ANNOTATIONS, QUARANTINE = "status", "transitions", "annotations", "quarantine"


def output_records(
    env: RawEnvelope, event: Normalised, outcome: Outcome | None
) -> list[tuple[str, str, Any]]:
    """What a worker publishes for one step: (topic suffix, key, JSON-safe record).

    A changed state goes to `status`; the effect to `transitions` or `annotations`; an
    envelope the core could not read to `quarantine`, keyed by its dedup key — but not
    one whose data was erased (`ERASED`): nothing is left of it, as in a replay.
    """
    if isinstance(event, Unrecognised) and event.reason == ERASED:
        return []
    if outcome is None:
        unread = event if isinstance(event, Unrecognised) else None
        return [(QUARANTINE, env.dedup_key, quarantine_record(env, unread))]
    state, effect = outcome
    key = state.subject.key
    records: list[tuple[str, str, Any]] = []
    if not (isinstance(effect, Annotation) and effect.kind == DUPLICATE):
        records.append((STATUS, key, status_record(state)))
    kind = ANNOTATIONS if isinstance(effect, Annotation) else TRANSITIONS
    records.append((kind, key, effect_to_dict(effect)))
    return records
