"""`step`: the only thing the runtimes call (embedded loop, Faust agent, replay).

The runtime owns storage; it hands in the subject states it holds (any mapping from
subject key to state: a dict, a Faust table) and stores the state the step returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Unrecognised
from statemachines.fold import ERASURE, Annotation, Outcome, SubjectState, Transition, fold
from statemachines.normalise import normalise


class Step(NamedTuple):
    envelope: RawEnvelope
    event: CanonicalEvent | Unrecognised
    outcome: Outcome | None  # None when the envelope was unrecognised (quarantine it)


def step(env: RawEnvelope, states: Mapping[str, SubjectState]) -> Step:
    return advance(env, normalise(env), states)


def advance(
    env: RawEnvelope, normalised: CanonicalEvent | Unrecognised, states: Mapping[str, SubjectState]
) -> Step:
    """The second half of `step`, for callers that normalised elsewhere (parallel replay)."""
    if isinstance(normalised, Unrecognised):
        return Step(env, normalised, None)
    return Step(env, normalised, fold(states.get(normalised.subject.key), normalised))


def replay(envelopes: list[RawEnvelope]) -> dict[str, SubjectState]:
    """Fold a whole log in memory: the reference the runtimes' projections must equal."""
    states: dict[str, SubjectState] = {}
    for env in envelopes:
        result = step(env, states)
        if result.outcome is not None:
            states[result.outcome.state.subject.key] = result.outcome.state
    return states


def standing_transitions(records: list[RawEnvelope]) -> tuple[int, ...]:
    """Log positions of the transitions one subject's records (all of them, in log order,
    erasure records included) leave in the projections: those since its latest erasure of
    everything, which deleted the ones before."""
    states: dict[str, SubjectState] = {}
    positions: list[int] = []
    for env in records:
        result = step(env, states)
        if result.outcome is None:
            continue
        state, effect = result.outcome
        states[state.subject.key] = state
        if isinstance(effect, Transition):
            positions.append(effect.offset)
        elif _erases_everything(effect, result.event):
            positions.clear()
    return tuple(positions)


def _erases_everything(effect: object, event: CanonicalEvent | Unrecognised) -> bool:
    erasure = isinstance(effect, Annotation) and effect.kind == ERASURE
    return erasure and isinstance(event, CanonicalEvent) and event.erase == "all"
