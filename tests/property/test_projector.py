"""Kafka mode's projector: the worker's output records, delivered at least once and in
no particular order across topics, must build exactly the tables the embedded processor
builds from the same steps (design.md §5.6). A crash can also make a worker refold an
event it had already stored and publish a "duplicate" note for it; that note must never
replace what the delivery really did.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.schema import PROJECTION_TABLES, open_projections
from projections.store import ProjectionStore
from projections.topics import Record, TopicProjection
from statemachines import step
from statemachines.codec import ANNOTATIONS, output_records
from statemachines.fold import DUPLICATE, Annotation, SubjectState
from statemachines.process import Step
from tests.payloads import Webhook
from tests.property.histories import History
from tests.property.test_convergence import arrivals, log_of

EXAMPLES = settings(max_examples=300, deadline=None)


def steps_of(sequence: list[Webhook]) -> list[Step]:
    states: dict[str, SubjectState] = {}
    steps = []
    for env in log_of(sequence):
        result = step(env, states)
        if result.outcome is not None:
            states[result.outcome.state.subject.key] = result.outcome.state
        steps.append(result)
    return steps


def refold_note(result: Step) -> tuple[str, str, Any] | None:
    """The annotation a worker publishes when it refolds an already-stored delivery."""
    if result.outcome is None:
        return None
    state, effect = result.outcome
    note = Annotation(state.subject, state.version, DUPLICATE, "this delivery was already "
                      "applied", effect.event_type, effect.dedup_key, effect.offset,
                      effect.received_at)  # fmt: skip
    return output_records(result.envelope, result.event, (state, note))[-1]


@st.composite
def deliveries(draw: st.DrawFn, steps: list[Step]) -> list[list[Record]]:
    """Per topic+key streams kept in order, interleaved at random; some records repeated
    (a redelivered batch, a stale copy) and some refold notes added; cut into batches."""
    streams: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for result in steps:
        for kind, key, record in output_records(*result):
            streams.setdefault((kind, key), []).append((kind, record))
        if draw(st.integers(0, 5)) == 0 and (note := refold_note(result)) is not None:
            streams.setdefault((ANNOTATIONS, note[1]), []).append((ANNOTATIONS, note[2]))
    queues = [list(s) for s in streams.values()]
    for queue in queues:
        if queue and draw(st.booleans()):
            start = draw(st.integers(0, len(queue) - 1))
            queue[start:start] = queue[start:]  # at-least-once: a suffix comes again
        if len(queue) > 1 and draw(st.integers(0, 3)) == 0:
            # A stale copy after newer records (a worker that lost its partitions but
            # still flushes its last batch).
            old = draw(st.integers(0, len(queue) - 2))
            queue.insert(draw(st.integers(old + 1, len(queue))), queue[old])
    flat: list[Record] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        kind, record = queue.pop(0)
        flat.append(Record(kind, kind, 0, len(flat), pydantic_core.to_json(record)))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(flat) - 1)), max_size=4)))
    return [flat[a:b] for a, b in zip([0, *cuts], [*cuts, len(flat)], strict=True) if a < b]


def tables(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table and the reference index, order-free; `transitions.seq` (feed
    arrival order) dropped."""
    names = (*PROJECTION_TABLES, "verification_references")
    rows = {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in names}
    rows["transitions"] = [row[1:] for row in rows["transitions"]]
    return {table: sorted(found, key=repr) for table, found in rows.items()}


@EXAMPLES
@given(data=st.data(), case=arrivals())
def test_projector_builds_the_embedded_tables_from_any_delivery(
    data: st.DataObject, case: tuple[History, list[Webhook]]
) -> None:
    _, sequence = case
    steps = steps_of(sequence)
    embedded = ProjectionStore(open_projections(":memory:"))
    embedded.apply(steps, len(steps))
    projection = TopicProjection(open_projections(":memory:"))
    for batch in data.draw(deliveries(steps)):
        projection.apply(batch)
    assert tables(projection.db) == tables(embedded.db)
    for db in (embedded.db, projection.db):
        assert_reference_index(db)


def assert_reference_index(db: Any) -> None:
    """`verification_references` holds exactly each row's references but its primary one
    (which `verifications_by_reference` finds), however the rows were written."""
    rows = db.execute('SELECT subject, reference, "references" FROM verifications').fetchall()
    expected = {
        (ref, subject)
        for subject, primary, refs in rows
        for ref in json.loads(refs)
        if ref != primary
    }
    assert set(db.execute("SELECT reference, subject FROM verification_references")) == expected
