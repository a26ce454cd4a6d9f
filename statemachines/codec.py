"""JSON-safe forms of states and effects, for Faust tables, topics and SQLite rows.

Each record carries a stable `type` name, never a module path, so stored data does not
depend on where classes live.
"""

from __future__ import annotations

import base64
from typing import Any

from statemachines.events import Subject
from statemachines.fold import Effect, SubjectState, Transition


def state_to_dict(state: SubjectState) -> dict[str, Any]:
    data = state._asdict()
    data["subject"] = state.subject.key
    data["parent"] = state.parent.key if state.parent else None
    data["seen"] = base64.b64encode(state.seen).decode("ascii")
    data["reasons"] = list(state.reasons)
    data["winner"] = list(state.winner) if state.winner else None
    data["attempt_keys"] = list(state.attempt_keys)
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
    return data
