"""Helpers shared by the provider tests: normalise, fold and inspect one subject."""

from __future__ import annotations

from statemachines import CanonicalEvent, Unrecognised, normalise, replay, step
from statemachines.fold import Annotation, Effect, SubjectState
from tests.payloads import Webhook, deliver

Expected = tuple[str, str, str | None, bool, str | None]  # kind, id, status, final, decided_by


def canonical(webhook: Webhook) -> CanonicalEvent:
    result = normalise(deliver(webhook))
    assert isinstance(result, CanonicalEvent), result
    return result


def fold_all(*webhooks: Webhook) -> SubjectState:
    """Replay the webhooks in arrival order (offset = position); one subject expected."""
    states = replay([deliver(w, offset) for offset, w in enumerate(webhooks)])
    assert len(states) == 1, states
    return next(iter(states.values()))


def effects(*webhooks: Webhook) -> list[Effect]:
    """The effect of each webhook, folded in arrival order."""
    states: dict[str, SubjectState] = {}
    found = []
    for offset, webhook in enumerate(webhooks):
        result = step(deliver(webhook, offset), states)
        assert result.outcome is not None, result.event
        states[result.outcome.state.subject.key] = result.outcome.state
        found.append(result.outcome.effect)
    return found


def annotation_kind(effect: Effect) -> str:
    assert isinstance(effect, Annotation), effect
    return effect.kind


def assert_maps(webhook: Webhook, expected: Expected) -> None:
    """Normalised event and folded projection both say `expected`."""
    provider = webhook[0]
    event = canonical(webhook)
    assert event.subject.provider == provider
    got = (event.subject.kind, event.subject.id, event.status, event.final, event.decided_by)
    assert got == expected
    row = fold_all(webhook).public()
    assert tuple(row[key] for key in ("kind", "id", "status", "final", "decided_by")) == expected
    attempt = 0 if event.status is None else 1
    assert (row["provider"], row["version"], row["attempt"]) == (provider, 1, attempt)


def assert_quarantined(result: object) -> None:
    assert isinstance(result, Unrecognised), result
    assert result.reason
    assert not result.reason.startswith("normaliser error"), result.reason
