"""IDWise: `{event, body: {eventId, journeyId, …}}` webhooks -> canonical events -> projection."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from statemachines import normalise, replay
from statemachines.providers import idwise as provider
from tests.payloads import Webhook, deliver, idwise
from tests.unit.folding import (
    Expected,
    annotation_kind,
    assert_maps,
    assert_quarantined,
    canonical,
    effects,
    fold_all,
)

JOURNEY = "journey-1"


def kyc(status: str | None, final: bool, decided_by: str | None) -> Expected:
    return ("kyc", JOURNEY, status, final, decided_by)


def journey(decision: str, event_id: str = "e-journey") -> Webhook:
    return idwise("Finished Journey", event_id=event_id, systemDecision=decision)


def reviewed(
    decision: str, event_id: str = "e-review", event: str = "Manually Reviewed"
) -> Webhook:
    return idwise(
        event,
        event_id=event_id,
        systemDecision="Refer",
        manualDecision=decision,
        finalDecision=decision,
    )


def update_required(event_id: str = "e-update") -> Webhook:
    steps = [{"stepId": "20", "reasonCode": "DOCUMENT_EXPIRED"}]
    return idwise(
        "Verification Update Required",
        event_id=event_id,
        trigger="KYC Renewal",
        requiredSteps=steps,
    )


def aml_update(event_id: str, decision: str, version: int) -> Webhook:
    return idwise(
        "AML Monitor Update",
        event_id=event_id,
        systemDecision=decision,
        updatedAMLVersionNumber=version,
    )


def legacy(event: str, **body: Any) -> Webhook:
    """The legacy shape (providers.md §3.3): no eventId; every event carries all decisions."""
    decisions = {"systemDecision": "Refer", "manualDecision": None, "finalDecision": "Refer"}
    doc = {
        "event": event,
        "body": {"journeyId": JOURNEY, "referenceNo": "customer-42", **decisions, **body},
    }
    return ("idwise", {"Content-Type": "application/json"}, json.dumps(doc).encode())


class TestRowsOfTheMappingTable:
    def test_finished_user_steps_is_submitted(self) -> None:
        webhook = idwise("Finished User Steps", event_id="e1", systemDecision="Refer")
        assert_maps(webhook, kyc("submitted", False, None))

    @pytest.mark.parametrize(
        ("decision", "expected"),
        [
            ("Complete", kyc("approved", True, "auto")),
            ("Refer", kyc("in_review", False, "auto")),
            ("Incomplete", kyc("incomplete", True, "auto")),
        ],
    )
    def test_finished_journey_is_the_system_decision(
        self, decision: str, expected: Expected
    ) -> None:
        assert_maps(journey(decision), expected)

    @pytest.mark.parametrize("event", ["Manually Reviewed", "Updated Journey"])
    @pytest.mark.parametrize(
        ("decision", "status"), [("Approved", "approved"), ("Rejected", "rejected")]
    )
    def test_reviewers_final_decision_is_manual(
        self, event: str, decision: str, status: str
    ) -> None:
        assert_maps(reviewed(decision, event=event), kyc(status, True, "manual"))

    def test_updated_journey_with_only_a_final_decision_is_manual(self) -> None:
        webhook = idwise(
            "Updated Journey", event_id="e1", finalDecision="Rejected", action="Manual Review"
        )
        assert_maps(webhook, kyc("rejected", True, "manual"))

    def test_verification_update_required_asks_for_resubmission(self) -> None:
        assert_maps(update_required(), kyc("resubmission_required", False, None))


# One body per documented event, and the subject it belongs to (design.md §4).
KYC_SUBJECT, AML_SUBJECT = f"idwise/kyc/{JOURNEY}", f"idwise/aml_monitoring/{JOURNEY}"
SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "Finished Journey": ({"systemDecision": "Complete"}, KYC_SUBJECT),
    "Manually Reviewed": ({"manualDecision": "Approved", "finalDecision": "Approved"}, KYC_SUBJECT),
    "AML Monitor Update": (
        {
            "systemDecision": "Refer",
            "previousSystemDecision": "Complete",
            "updatedAMLVersionNumber": 2,
        },
        AML_SUBJECT,
    ),
    "Finished User Steps": ({"systemDecision": "Complete"}, KYC_SUBJECT),
    "Finished Step": ({"stepId": "0"}, KYC_SUBJECT),
    "Updated Journey": ({"finalDecision": "Rejected", "action": "AML Amend"}, KYC_SUBJECT),
    "Verification Update Required": ({"trigger": "KYC Renewal", "requiredSteps": []}, KYC_SUBJECT),
    "KYC Renewal Deadline Exceeded": ({"requiredSteps": [{"stepId": "20"}]}, KYC_SUBJECT),
    "Finished Spot Check": ({}, KYC_SUBJECT),
    "Step Submitted": ({"stepId": "0", "stepType": "Document"}, KYC_SUBJECT),
}


class TestEveryEventBelongsToItsSubject:
    def test_the_samples_cover_every_documented_event(self) -> None:
        assert set(SAMPLES) == set(provider.EVENT_TYPES)

    @pytest.mark.parametrize("name", provider.EVENT_TYPES)
    def test_event_belongs_to_the_journey(self, name: str) -> None:
        body, subject = SAMPLES[name]
        event = canonical(idwise(name, event_id="e1", **body))
        assert (event.subject.key, event.event_type, event.recognised) == (subject, name, True)
        assert fold_all(idwise(name, event_id="e1", **body)).version == 1

    @pytest.mark.parametrize("name", provider.EVENT_TYPES)
    def test_legacy_body_without_event_id_belongs_to_the_same_subject(self, name: str) -> None:
        webhook = legacy(name, **SAMPLES[name][0])
        assert deliver(webhook).dedup_key.startswith("idwise:content:")
        assert canonical(webhook).subject.key == SAMPLES[name][1]

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({}, kyc("in_review", False, "auto")),
            (
                {"systemDecision": "Complete", "finalDecision": "Complete"},
                kyc("approved", True, "auto"),
            ),
            (
                {"manualDecision": "Approved", "finalDecision": "Approved"},
                kyc("approved", True, "manual"),
            ),
        ],
    )
    def test_legacy_finished_journey_maps_like_the_current_one(
        self, body: dict[str, Any], expected: Expected
    ) -> None:
        assert_maps(legacy("Finished Journey", **body), expected)

    @pytest.mark.parametrize("name", ["AML Monitor Update", "AML Monior Update"])
    def test_aml_monitor_update_in_either_spelling_is_the_monitoring_subject(
        self, name: str
    ) -> None:
        event = canonical(idwise(name, event_id="e1", **SAMPLES["AML Monitor Update"][0]))
        assert (event.subject.key, event.status) == (AML_SUBJECT, "alert")

    def test_event_name_is_read_regardless_of_case_and_spacing(self) -> None:
        webhook = idwise("finished_journey", event_id="e1", systemDecision="Complete")
        assert canonical(webhook).status == "approved"


class TestDecisionsWhereTheDocumentsAreSilent:
    @pytest.mark.parametrize(
        ("system", "manual"),
        list(itertools.product(["Complete", "Refer", "Incomplete"], ["Approved", "Rejected"])),
    )
    def test_manual_review_beats_the_finished_journey_in_both_orders(
        self, system: str, manual: str
    ) -> None:
        for order in [(journey(system), reviewed(manual)), (reviewed(manual), journey(system))]:
            row = fold_all(*order).public()
            got = (row["status"], row["final"], row["decided_by"])
            assert got == (manual.lower(), True, "manual")

    def test_finished_user_steps_arriving_after_the_journey_is_late(self) -> None:
        steps = idwise("Finished User Steps", event_id="e-steps", systemDecision="Refer")
        assert annotation_kind(effects(journey("Complete"), steps)[1]) == "late"
        for order in [(journey("Complete"), steps), (steps, journey("Complete"))]:
            assert fold_all(*order).status == "approved"

    def test_update_required_opens_attempt_two(self) -> None:
        row = fold_all(journey("Complete"), update_required()).public()
        assert (row["attempt"], row["status"], row["final"]) == (2, "resubmission_required", False)

    @pytest.mark.parametrize(
        ("decision", "status", "final"),
        [("Complete", "approved", True), ("Incomplete", "incomplete", True)],
    )
    def test_finished_journey_after_update_required_decides_attempt_two(
        self, decision: str, status: str, final: bool
    ) -> None:
        first, second = journey("Refer", "e1"), journey(decision, "e3")
        row = fold_all(first, reviewed("Rejected"), update_required("e2"), second).public()
        got = (row["attempt"], row["status"], row["final"], row["decided_by"])
        assert got == (2, status, final, "auto")

    def test_later_aml_version_wins_in_either_order(self) -> None:
        old = aml_update("a1", decision="Complete", version=2)
        new = aml_update("a2", decision="Refer", version=3)
        assert fold_all(old, new).status == fold_all(new, old).status == "alert"


class TestFoldingAnnotations:
    def test_duplicate_event_id_changes_nothing(self) -> None:
        assert annotation_kind(effects(journey("Complete"), journey("Complete"))[1]) == "duplicate"
        assert fold_all(journey("Complete"), journey("Complete")) == fold_all(journey("Complete"))

    def test_retry_with_the_same_event_id_is_a_duplicate_even_if_reserialised(self) -> None:
        first = journey("Complete", "e1")
        provider_, headers, body = first
        retry = (provider_, headers, json.dumps(json.loads(body), indent=2).encode())
        assert annotation_kind(effects(first, retry)[1]) == "duplicate"

    def test_legacy_body_without_event_id_is_deduplicated_by_its_content(self) -> None:
        first = legacy("Finished Journey", systemDecision="Complete", finalDecision="Complete")
        provider_, headers, body = first
        doc = json.loads(body)
        retry = (provider_, headers, json.dumps(doc, indent=2, sort_keys=True).encode())
        assert deliver(first).body != deliver(retry).body
        assert annotation_kind(effects(first, retry)[1]) == "duplicate"
        assert fold_all(first, retry) == fold_all(first)

    def test_legacy_bodies_of_different_content_are_different_deliveries(self) -> None:
        refer = legacy("Finished Journey")
        reviewed = legacy("Manually Reviewed", manualDecision="Approved", finalDecision="Approved")
        assert deliver(refer).dedup_key != deliver(reviewed).dedup_key
        state = fold_all(refer, reviewed)
        assert (state.status, state.decided_by, state.version) == ("approved", "manual", 2)

    def test_finished_step_is_history_that_bumps_the_version(self) -> None:
        step_ = idwise("Finished Step", event_id="e-step", stepId="0")
        assert annotation_kind(effects(journey("Refer"), step_)[1]) == "history"
        state = fold_all(journey("Refer"), step_)
        assert (state.status, state.version) == ("in_review", 2)

    def test_unknown_event_lands_in_history_as_unknown(self) -> None:
        webhook = idwise("Journey Archived", event_id="e1")
        assert (canonical(webhook).status, canonical(webhook).recognised) == (None, False)
        assert annotation_kind(effects(webhook)[0]) == "unknown"


BAD_BODIES = {
    "empty": b"",
    "not json": b"event=Finished+Journey",
    "invalid utf-8": b'{"event": "Finished Journey\xc3\x28"}',
    "json array": b'[{"event": "Finished Journey"}]',
    "json string": b'"Finished Journey"',
    "100000 nested lists": b"[" * 100_000 + b"]" * 100_000,
    "deep body": b'{"event":"Finished Journey","body":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


class TestBadInputIsQuarantinedNeverRaised:
    @pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
    def test_unreadable_body(self, body: bytes) -> None:
        envelope = deliver(("idwise", {}, body))
        assert_quarantined(normalise(envelope))
        assert replay([envelope]) == {}

    @pytest.mark.parametrize(
        "doc",
        [
            {"body": {"journeyId": JOURNEY}},
            {"event": "Finished Journey"},
            {"event": "Finished Journey", "body": [1]},
        ],
        ids=["no event", "no body", "body not an object"],
    )
    def test_malformed_envelope(self, doc: dict[str, Any]) -> None:
        webhook = ("idwise", {}, json.dumps(doc).encode())
        assert_quarantined(normalise(deliver(webhook)))

    @pytest.mark.parametrize("name", [*provider.EVENT_TYPES, "Journey Archived"])
    def test_event_without_journey_id(self, name: str) -> None:
        doc = {
            "event": name,
            "body": {"eventId": "e1", "referenceNo": "r", **SAMPLES.get(name, ({}, ""))[0]},
        }
        assert_quarantined(normalise(deliver(("idwise", {}, json.dumps(doc).encode()))))

    @pytest.mark.parametrize(
        ("name", "body"),
        [
            ("Finished Journey", {"systemDecision": "Frobnicated"}),
            ("Finished Journey", {}),
            ("Manually Reviewed", {"finalDecision": "Frobnicated"}),
            ("Updated Journey", {"finalDecision": "Frobnicated"}),
            ("AML Monitor Update", {"systemDecision": "Frobnicated"}),
        ],
    )
    def test_unknown_decision(self, name: str, body: dict[str, Any]) -> None:
        assert_quarantined(normalise(deliver(idwise(name, event_id="e1", **body))))


class TestTheIntegratorsReference:
    def test_reference_no_is_the_reference(self) -> None:
        event = canonical(journey("Complete"))
        assert (event.reference, event.references) == ("customer-42", ("customer-42",))
        assert fold_all(journey("Complete")).reference == "customer-42"

    def test_legacy_bodies_carry_it_too(self) -> None:
        assert canonical(legacy("Finished User Steps")).reference == "customer-42"

    def test_aml_monitoring_of_the_journey_carries_it(self) -> None:
        state = fold_all(aml_update("a1", decision="Refer", version=1))
        assert (state.subject.kind, state.reference) == ("aml_monitoring", "customer-42")
