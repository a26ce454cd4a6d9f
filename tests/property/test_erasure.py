"""Erasure over generated histories (issue 12, docs/personal-data.md):

- erasing personal data keeps the decision trail, drops the references, touches no other
  subject;
- the log as erasure leaves it (deliveries reduced to their events, or to nothing) folds
  to exactly the live state, and projects to exactly the live tables;
- Kafka mode's projector builds the embedded tables from any delivery of the worker's
  records around an erasure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from projections.schema import open_projections
from projections.store import ProjectionStore
from projections.topics import TopicProjection
from statemachines import replay, step
from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent
from statemachines.fold import SubjectState
from statemachines.normalise import normalise, reduced_form
from statemachines.process import Step
from statemachines.reduced import SCOPES, erase_record
from tests.payloads import Webhook, deliver
from tests.property.histories import History
from tests.property.test_convergence import arrivals, log_of
from tests.property.test_projector import assert_reference_index, deliveries, tables

EXAMPLES = settings(max_examples=300, deadline=None)
ERASED_AT = "2026-11-23T09:00:00.000000Z"
TRAIL = ("status", "final", "decided_by", "attempt", "provider_status", "reasons", "parent")
JUNK: Webhook = ("ondato", {"Content-Type": "application/json"}, b"{not json")


def subject_of(log: list[RawEnvelope]) -> str:
    keys = [e.subject.key for e in map(normalise, log) if isinstance(e, CanonicalEvent)]
    assume(keys)
    return keys[0]


def erasure(
    key: str, offset: int, scope: str, keep: bool, dropped: tuple[int, ...] = ()
) -> RawEnvelope:
    record = erase_record(
        key, scope=scope, keep_reference=keep, by="cli", received_at=ERASED_AT, dropped=dropped
    )
    return record.at(offset)


def reduce(env: RawEnvelope, key: str, scope: str, keep: bool, dropped: set[int]) -> RawEnvelope:
    """The delivery as the erasure of `key` leaves it in the raw log."""
    event = normalise(env)
    if env.offset in dropped:
        kept = ""
    elif isinstance(event, CanonicalEvent) and event.subject.key == key:
        kept = "" if scope == "all" else reduced_form(env, keep_reference=keep)
    else:
        return env
    return replace(env, body=b"", headers={}, reduced=kept)


@EXAMPLES
@given(arrivals(), st.booleans())
def test_erasing_personal_data_keeps_the_trail_and_drops_the_references(
    case: tuple[History, list[Webhook]], keep: bool
) -> None:
    _, sequence = case
    log = log_of(sequence)
    key = subject_of(log)
    live = replay(log)
    erased = replay([*log, erasure(key, len(log), "personal", keep)])
    before, after = live[key], erased[key]
    assert [getattr(after, name) for name in TRAIL] == [getattr(before, name) for name in TRAIL]
    kept = (before.reference, before.references) if keep else (None, ())
    assert (after.reference, after.references) == kept
    assert (after.erased_at, after.version) == (ERASED_AT, before.version + 1)
    assert {k: s for k, s in erased.items() if k != key} == {
        k: s for k, s in live.items() if k != key
    }


@st.composite
def erased_logs(draw: st.DrawFn) -> tuple[list[RawEnvelope], list[RawEnvelope]]:
    """A log with an erasure somewhere (deliveries after it too, and maybe a repeat of the
    record, and a quarantined delivery it drops), and the same log as the erasure left it."""
    _, sequence = draw(arrivals())
    log = log_of(sequence)
    key = subject_of(log)
    at = draw(st.integers(0, len(log)))
    scope, keep = draw(st.sampled_from(SCOPES)), draw(st.booleans())
    junk = draw(st.booleans())
    if junk:
        log.insert(draw(st.integers(0, at)), deliver(JUNK))
        at += 1
    log = [env.at(n + 1) for n, env in enumerate(log)]
    dropped = {log[n].offset for n in range(at) if log[n].body == JUNK[2]}
    record = erasure(key, at + 1, scope, keep, tuple(sorted(dropped)))
    live = [*log[:at], record, *(env.at(env.offset + 1) for env in log[at:])]
    if draw(st.booleans()):
        live.append(record.at(len(live) + 1))  # the same record again: changes nothing
    before = [reduce(env, key, scope, keep, dropped) for env in live[:at]]
    return live, [*before, *live[at:]]


def fold_steps(log: list[RawEnvelope]) -> list[Step]:
    states: dict[str, SubjectState] = {}
    steps = []
    for env in log:
        result = step(env, states)
        if result.outcome is not None:
            states[result.outcome.state.subject.key] = result.outcome.state
        steps.append(result)
    return steps


def projected(steps: list[Step], cuts: list[int]) -> Any:
    """The embedded store's tables after applying `steps` in batches cut at `cuts`."""
    store = ProjectionStore(open_projections(":memory:"))
    for a, b in zip([0, *cuts], [*cuts, len(steps)], strict=True):
        if a < b:
            store.apply(steps[a:b], steps[b - 1].envelope.offset)
    return store.db


@EXAMPLES
@given(erased_logs(), st.data())
def test_the_log_as_erasure_leaves_it_replays_to_the_live_state_and_tables(
    logs: tuple[list[RawEnvelope], list[RawEnvelope]], data: st.DataObject
) -> None:
    live, reduced = logs
    assert replay(reduced) == replay(live)
    cut = st.sets(st.integers(1, max(1, len(live) - 1)), max_size=3).map(sorted)
    live_db = projected(fold_steps(live), data.draw(cut))
    replay_db = projected(fold_steps(reduced), data.draw(cut))
    assert tables(live_db) == tables(replay_db)
    assert_reference_index(live_db)


@EXAMPLES
@given(erased_logs(), st.data())
def test_the_projector_builds_the_embedded_tables_around_an_erasure(
    logs: tuple[list[RawEnvelope], list[RawEnvelope]], data: st.DataObject
) -> None:
    live, _ = logs
    steps = fold_steps(live)
    embedded = projected(steps, [])
    projection = TopicProjection(open_projections(":memory:"))
    for batch in data.draw(deliveries(steps)):
        projection.apply(batch)
    assert tables(projection.db) == tables(embedded)
    assert_reference_index(projection.db)
