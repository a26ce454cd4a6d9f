"""Invariants of design.md §5, over generated histories of every provider and kind.

- any permutation with any duplication converges to the same projection;
- folding is deterministic, and folding the log again changes nothing;
- decisions never regress; `deleted` absorbs; no valid history makes an illegal step;
- state survives its codec unchanged;
- the integrator's reference is a set function like the rest of the projection;
- an iDenfy body re-sent under another (unsigned) event-type header changes nothing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statemachines import SubjectState, replay, step
from statemachines.codec import state_from_dict, state_to_dict
from statemachines.envelope import RawEnvelope
from statemachines.events import MANUAL_DECISION
from statemachines.fold import ILLEGAL, Annotation
from statemachines.providers.idenfy import EVENT_TYPES, KYC_EVENTS
from tests.payloads import Webhook, deliver, idenfy_identification
from tests.property.histories import HISTORIES, History

EXAMPLES = settings(max_examples=1000, deadline=None)
KINDS = st.sampled_from(sorted(HISTORIES))
# Fields that record *where in the log* something happened differ by arrival, by design.
ARRIVAL_FIELDS = {"cause_offset"}


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[History, list[Webhook]]:
    """A history and one arrival order: blocks in order, shuffled inside, duplicated."""
    history = draw(KINDS.flatmap(lambda kind: HISTORIES[kind]))
    sequence: list[Webhook] = []
    for block in history:
        shuffled = draw(st.permutations(block))
        for webhook in shuffled:
            sequence.append(webhook)
            if draw(st.integers(0, 4)) == 0:  # a retry, somewhere later
                position = draw(st.integers(len(sequence), len(sequence) + 3))
                sequence.insert(min(position, len(sequence)), draw(resent(webhook)))
    return history, sequence


@st.composite
def resent(draw: st.DrawFn, webhook: Webhook) -> Webhook:
    """A retry: the same bytes, for iDenfy possibly under another event-type header (the
    header is not signed, so anyone holding a signed body can do that)."""
    provider, headers, body = webhook
    if provider != "idenfy" or draw(st.booleans()):
        return webhook
    # A result body under any header; any other body under a result header or none.
    result = headers.get("Idenfy-Event-Type", "IDENTIFICATION") in KYC_EVENTS
    header = draw(st.sampled_from([*KYC_EVENTS, "", *(EVENT_TYPES if result else ())]))
    return provider, {**headers, "Idenfy-Event-Type": header}, body


def log_of(sequence: list[Webhook]) -> list[RawEnvelope]:
    # Each delivery keeps its own receive time, whatever its position in the log.
    return [deliver(w, offset, received_at=_stamp(w)) for offset, w in enumerate(sequence)]


def _stamp(webhook: Webhook) -> str:
    return f"2026-11-22T10:00:{hash(webhook[2]) % 60:02d}.000000Z"


def projections(states: dict[str, SubjectState]) -> dict[str, dict[str, Any]]:
    # public() holds the references too: they converge like every other field.
    return {
        key: {k: v for k, v in state.public().items() if k not in ARRIVAL_FIELDS}
        for key, state in states.items()
    }


def in_order(history: History) -> list[Webhook]:
    return [webhook for block in history for webhook in block]


@EXAMPLES
@given(arrivals())
def test_any_permutation_with_duplicates_converges(case: tuple[History, list[Webhook]]) -> None:
    history, sequence = case
    assert projections(replay(log_of(sequence))) == projections(replay(log_of(in_order(history))))


@EXAMPLES
@given(arrivals())
def test_folding_is_deterministic_and_refolding_changes_nothing(
    case: tuple[History, list[Webhook]],
) -> None:
    _, sequence = case
    log = log_of(sequence)
    states = replay(log)
    assert replay(log) == states
    again = dict(states)
    for env in log:  # the same deliveries once more, at later offsets
        result = step(env.at(env.offset + len(log)), again)
        assert result.outcome is None or isinstance(result.outcome.effect, Annotation)
        if result.outcome is not None:
            again[result.outcome.state.subject.key] = result.outcome.state
    assert again == states


@EXAMPLES
@given(arrivals())
def test_decisions_never_regress_and_no_step_is_illegal(
    case: tuple[History, list[Webhook]],
) -> None:
    _, sequence = case
    states: dict[str, SubjectState] = {}
    for env in log_of(sequence):
        result = step(env, states)
        if result.outcome is None:
            continue
        effect, after = result.outcome.effect, result.outcome.state
        assert not (isinstance(effect, Annotation) and effect.kind == ILLEGAL), effect.reason
        before = states.get(after.subject.key)
        if before is not None and before.winner is not None:
            assert after.winner is not None and after.winner >= before.winner
            if before.status == "deleted":
                assert after.status == "deleted"
            same_attempt = after.winner[1] == before.winner[1]
            if same_attempt and before.winner[2] == MANUAL_DECISION:
                assert after.decided_by == "manual"
            # KYC: expired/canceled never override a decision of the same attempt. (A KYB
            # approval may later expire: that is the next phase of its lifecycle.)
            kyc = after.subject.kind == "kyc"
            if kyc and same_attempt and before.final and before.decided_by:
                assert after.final and after.decided_by is not None
        states[after.subject.key] = after


@EXAMPLES
@given(arrivals())
def test_state_survives_its_codec(case: tuple[History, list[Webhook]]) -> None:
    _, sequence = case
    for state in replay(log_of(sequence)).values():
        assert state_from_dict(state_to_dict(state)) == state


@EXAMPLES
@given(arrivals())
def test_state_survives_the_verifications_row(case: tuple[History, list[Webhook]]) -> None:
    # The processor resumes a subject from its row after a restart or a cache eviction.
    from projections.store import state_from_row, verification_row

    _, sequence = case
    for state in replay(log_of(sequence)).values():
        assert state_from_row(verification_row(state)) == state


def test_the_reference_survives_the_verifications_row() -> None:
    from projections.store import state_from_row, verification_row

    state = replay(log_of([idenfy_identification(client_id="c-1", external_ref="x-1")]))
    for found in state.values():
        assert (found.reference, found.references) == ("c-1", ("c-1", "x-1"))
        assert state_from_row(verification_row(found)) == found
