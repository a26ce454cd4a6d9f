"""Erasure in the pure core (issue 12, docs/personal-data.md): the erasure record as a
canonical event, what the fold does with it, and what the codecs carry of it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from statemachines import replay, step
from statemachines.codec import (
    ANNOTATIONS,
    STATUS,
    effect_from_dict,
    effect_to_dict,
    output_records,
    state_from_dict,
    state_from_status_record,
    state_to_dict,
    status_record,
)
from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Order, Subject, Unrecognised
from statemachines.fold import DUPLICATE, ERASURE, Annotation, SubjectState
from statemachines.normalise import normalise, reduced_form
from statemachines.reduced import (
    CONTROL,
    ERASE,
    ERASED,
    erase_record,
    event_from_json,
    event_to_json,
    read_reduced,
)
from tests import payloads as p

SCAN = "3af0b5c2-6ac8-11ee-b962-0242ac120002"
KEY = f"idenfy/kyc/{SCAN}"
ERASED_AT = "2026-11-23T09:00:00.000000Z"


def erasure(
    offset: int, scope: str = "personal", *, keep: bool = False, dropped: tuple[int, ...] = ()
) -> RawEnvelope:
    record = erase_record(
        KEY, scope=scope, keep_reference=keep, by="cli", received_at=ERASED_AT, dropped=dropped
    )
    return record.at(offset)


def decided() -> list[RawEnvelope]:
    """An iDenfy subject with two references, a transition and a manual decision."""
    return [
        p.deliver(p.idenfy_identification(final=False, overall="REVIEWING", external_ref="x-1"), 1),
        p.deliver(p.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", overall="DENIED"), 2),
    ]


def fold_log(envelopes: list[RawEnvelope]) -> SubjectState:
    states = replay(envelopes)
    assert list(states) == [KEY]
    return states[KEY]


def effect_of(env: RawEnvelope, state: SubjectState) -> Annotation:
    outcome = step(env, {KEY: state}).outcome
    assert outcome is not None and isinstance(outcome.effect, Annotation)
    return outcome.effect


class TestTheErasureRecord:
    def test_normalises_to_a_history_event_for_the_erased_subject(self) -> None:
        event = normalise(erasure(7, "all", keep=True, dropped=(3, 5)))
        assert isinstance(event, CanonicalEvent)
        assert event.subject == Subject("idenfy", "kyc", SCAN)
        assert (event.event_type, event.status, event.offset) == (ERASE, None, 7)
        assert (event.erase, event.keep_reference, event.dropped) == ("all", True, (3, 5))
        assert event.received_at == ERASED_AT and event.note == "erased by cli"

    def test_a_subject_id_with_slashes_stays_whole(self) -> None:
        env = erase_record("ondato/kyb_document/a/b", scope="personal", keep_reference=False,
                           by="cli", received_at=ERASED_AT)  # fmt: skip
        event = normalise(env)
        assert isinstance(event, CanonicalEvent)
        assert event.subject == Subject("ondato", "kyb_document", "a/b")

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"subject": "idenfy/kyc", "scope": "all"}',
            b'{"subject": "idenfy/kyc/s", "scope": "some"}',
            b'{"subject": "idenfy/kyc/s", "scope": "all", "dropped": ["3"]}',
            b'{"subject": 7, "scope": "all"}',
        ],
    )
    def test_anything_else_under_the_control_provider_is_quarantined(self, body: bytes) -> None:
        env = RawEnvelope(CONTROL, body, {}, ERASED_AT, "kycflow:x", "", offset=4)
        result = normalise(env)
        assert isinstance(result, Unrecognised) and result.offset == 4

    def test_a_delivery_reduced_to_nothing_reads_as_erased(self) -> None:
        env = p.deliver(p.idenfy_identification(), 3)
        result = normalise(reduced(env, ""))
        assert isinstance(result, Unrecognised) and result.reason == ERASED


def reduced(env: RawEnvelope, kept: str) -> RawEnvelope:
    """The delivery once reduced: its body gone, `kept` in its place."""
    return replace(env, body=b"", headers={}, reduced=kept)


class TestReducedForms:
    def test_every_field_of_an_event_survives_its_reduced_form(self) -> None:
        event = CanonicalEvent(
            subject=Subject("ondato", "kyb_document", "d/1"),
            event_type="Updated",
            status="validated",
            order=Order(klass=3, time=9, rank=2, attempt=None, opens_attempt=True),
            dedup_key="ondato:webhook:w",
            offset=11,
            received_at=ERASED_AT,
            final=True,
            decided_by="manual",
            provider_status="Validated",
            reasons=("a", "b"),
            parent=Subject("ondato", "kyb", "k"),
            note="n",
            recognised=False,
            reference="r-1",
            references=("r-1", "r-2"),
            erase="personal",
            keep_reference=True,
            dropped=(4, 6),
            wiped=(2, 3),
        )
        for name, value in event._asdict().items():
            default = CanonicalEvent._field_defaults.get(name, object())
            assert value != default, name  # every field set: none can be left behind
        env = RawEnvelope("ondato", b"", {}, ERASED_AT, "k", "", offset=11)
        kept = event_from_json(event_to_json(event, keep_reference=True), env)
        assert kept == event
        gone = event_from_json(event_to_json(event), env)
        assert gone == event._replace(reference=None, references=())

    def test_an_event_reduced_before_erasure_fields_existed_still_reads(self) -> None:
        event = normalise(p.deliver(p.idenfy_identification(), 5))
        assert isinstance(event, CanonicalEvent)
        data = json.loads(event_to_json(event))
        for name in ("erase", "keep_reference", "dropped"):
            del data[name]
        env = RawEnvelope("idenfy", b"", {}, p.RECEIVED_AT, event.dedup_key, "", offset=5)
        read = read_reduced(reduced(env, json.dumps(data)))
        assert read == event._replace(reference=None, references=())

    def test_the_erasure_record_survives_its_reduced_form(self) -> None:
        env = erasure(9, "all", dropped=(1,))
        event = normalise(env)
        again = read_reduced(reduced(env, reduced_form(env)))
        assert again == event


class TestErasingPersonalData:
    def test_keeps_the_decision_trail_and_drops_the_references(self) -> None:
        before = fold_log(decided())
        assert before.references == ("client-42", "x-1")
        after = fold_log([*decided(), erasure(3)])
        assert after == before._replace(
            reference=None,
            references=(),
            version=before.version + 1,
            updated_at=ERASED_AT,
            seen=after.seen,
            erased_at=ERASED_AT,
        )
        assert after.seen[:-8] == before.seen
        assert after.public()["erased_at"] == ERASED_AT

    def test_the_history_shows_the_erasure(self) -> None:
        note = effect_of(erasure(3, dropped=(8,)), fold_log(decided()))
        assert (note.kind, note.version, note.event_type, note.offset) == (ERASURE, 3, ERASE, 3)
        assert note.dropped == (8,)
        assert note.reason == "personal data erased (erased by cli)"

    def test_the_reference_stays_when_asked(self) -> None:
        after = fold_log([*decided(), erasure(3, keep=True)])
        assert (after.reference, after.references) == ("client-42", ("client-42", "x-1"))
        assert after.erased_at == ERASED_AT and after.erased_before is None

    def test_a_repeated_erasure_record_changes_nothing(self) -> None:
        once = fold_log([*decided(), erasure(3)])
        assert effect_of(erasure(4), once).kind == DUPLICATE
        assert fold_log([*decided(), erasure(3), erasure(4)]) == once

    def test_a_retry_of_an_erased_delivery_is_still_a_duplicate(self) -> None:
        once = fold_log([*decided(), erasure(3)])
        retried = fold_log([*decided(), erasure(3), decided()[0].at(4)])
        assert retried == once

    def test_later_events_fold_as_usual_and_may_bring_a_reference(self) -> None:
        later = p.deliver(p.idenfy_identification("IDENTIFICATION_RESUBMITTED", start=1_800_000_000,
                                                  client_id="c-new"), 4)  # fmt: skip
        after = fold_log([*decided(), erasure(3), later])
        assert (after.status, after.attempt, after.reference) == ("approved", 2, "c-new")
        assert after.erased_at == ERASED_AT


class TestErasingEverything:
    def test_leaves_a_bare_subject(self) -> None:
        after = fold_log([*decided(), erasure(3, "all")])
        assert after == SubjectState(
            Subject("idenfy", "kyc", SCAN),
            version=1,
            updated_at=ERASED_AT,
            seen=after.seen,
            erased_at=ERASED_AT,
            erased_before=3,
        )
        assert len(after.seen) == 8
        public = after.public()
        assert (public["status"], public["reference"], public["erased_at"]) == (
            None,
            None,
            ERASED_AT,
        )

    def test_is_what_a_replay_of_the_reduced_log_gives(self) -> None:
        # Every delivery of the subject reduced to nothing: only the erasure record folds.
        assert replay([erasure(3, "all")]) == replay([*decided(), erasure(3, "all")])

    def test_a_retry_afterwards_folds_again(self) -> None:
        after = fold_log([*decided(), erasure(3, "all"), decided()[0].at(4)])
        assert (after.status, after.reference, after.version) == ("in_review", "client-42", 2)
        assert after.erased_before == 3


class TestCodecs:
    def test_the_state_survives_its_codecs(self) -> None:
        for scope in ("personal", "all"):
            state = fold_log([*decided(), erasure(3, scope)])
            assert state_from_dict(state_to_dict(state)) == state
            assert state_from_status_record(status_record(state)) == state

    def test_the_status_record_says_where_everything_was_erased(self) -> None:
        state = fold_log([*decided(), erasure(3, "all")])
        record = status_record(state)
        assert record["erased_at"] == ERASED_AT and record["fold"]["erased_before"] == 3

    def test_a_status_record_from_before_erasure_still_reads(self) -> None:
        state = fold_log(decided())
        record = status_record(state)
        del record["erased_at"], record["fold"]["erased_before"]
        assert state_from_status_record(record) == state

    def test_an_erasure_note_carries_what_it_dropped_and_others_do_not(self) -> None:
        note = effect_of(erasure(3, dropped=(8, 9)), fold_log(decided()))
        assert effect_to_dict(note)["dropped"] == [8, 9]
        assert effect_from_dict(json.loads(json.dumps(effect_to_dict(note)))) == note
        plain = note._replace(kind="history", dropped=())
        assert "dropped" not in effect_to_dict(plain)
        assert effect_from_dict(effect_to_dict(plain)) == plain

    def test_a_worker_publishes_nothing_for_a_delivery_erased_to_nothing(self) -> None:
        env = reduced(p.deliver(p.idenfy_identification(), 3), "")
        assert output_records(env, normalise(env), None) == []

    def test_a_worker_publishes_the_erased_state_and_the_note(self) -> None:
        env = erasure(3, "all")
        result = step(env, {KEY: fold_log(decided())})
        records = output_records(*result)
        assert [(kind, key) for kind, key, _ in records] == [(STATUS, KEY), (ANNOTATIONS, KEY)]
        assert records[0][2]["version"] == 1 and records[1][2]["kind"] == ERASURE
