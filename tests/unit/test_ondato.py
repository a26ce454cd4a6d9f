"""Ondato: `{id, createdUtc, payload, type}` webhooks -> canonical events -> projection."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from statemachines import normalise, replay
from statemachines.providers import ondato as provider
from tests.payloads import (
    Webhook,
    deliver,
    ondato,
    ondato_document,
    ondato_idv,
    ondato_kyb,
    ondato_kyc,
)
from tests.unit.folding import (
    Expected,
    annotation_kind,
    assert_maps,
    assert_quarantined,
    canonical,
    effects,
    fold_all,
)

T0 = "2026-11-22T10:00:00Z"  # 0 fractional digits
T3 = "2026-11-22T10:00:00.123Z"  # 3 digits, later than T0
T7 = "2026-11-22T10:00:00.1234567Z"  # 7 digits, later than T3 (as strings it sorts first)
LATER = "2026-11-22T10:05:00.5Z"


class TestKycRowsOfTheMappingTable:
    @pytest.mark.parametrize(
        ("raw", "status", "final"),
        [
            ("Pending", "pending", False),
            ("InProgress", "in_progress", False),
            ("Completed", "submitted", False),
            ("Aborted", "canceled", True),
            ("Expired", "expired", True),
        ],
    )
    def test_identity_verification_status_change(self, raw: str, status: str, final: bool) -> None:
        assert_maps(ondato_idv(raw, webhook_id="w1"), ("kyc", "idv-1", status, final, None))

    @pytest.mark.parametrize(
        ("event", "status"), [("Created", "in_progress"), ("Processed", "submitted")]
    )
    def test_kyc_identification_progress(self, event: str, status: str) -> None:
        assert_maps(ondato_kyc(event, webhook_id="w1"), ("kyc", "idv-1", status, False, None))

    @pytest.mark.parametrize(
        ("event", "reason", "expected"),
        [
            ("Approved", "AutomaticallyIdentified", ("kyc", "idv-1", "approved", True, "auto")),
            ("Approved", "ManuallyIdentified", ("kyc", "idv-1", "approved", True, "manual")),
            ("Approved", None, ("kyc", "idv-1", "approved", True, "auto")),
            ("Rejected", "AutomaticallyUnidentified", ("kyc", "idv-1", "rejected", True, "auto")),
            ("Rejected", "ManuallyUnidentified", ("kyc", "idv-1", "rejected", True, "manual")),
        ],
    )
    def test_kyc_identification_decision(
        self, event: str, reason: str | None, expected: Expected
    ) -> None:
        assert_maps(ondato_kyc(event, reason=reason, webhook_id="w1"), expected)

    def test_kyc_identification_update_leaves_the_status_unchanged(self) -> None:
        approved = ondato_kyc("Approved", reason="ManuallyIdentified", webhook_id="w1")
        updated = ondato_kyc("Updated", status="Approved", webhook_id="w2", created=LATER)
        assert canonical(updated).status is None
        row = fold_all(approved, updated).public()
        assert (row["status"], row["decided_by"], row["version"]) == ("approved", "manual", 2)


class TestKybRowsOfTheMappingTable:
    @pytest.mark.parametrize(
        ("event", "status", "final"),
        [
            ("Created", "submitted", False),
            ("Approved", "approved", True),
            ("Rejected", "rejected", True),
        ],
    )
    def test_kyb_identification(self, event: str, status: str, final: bool) -> None:
        assert_maps(ondato_kyb(event, webhook_id="w1"), ("kyb", "kyb-1", status, final, None))

    @pytest.mark.parametrize(
        ("event", "raw", "status", "final"),
        [
            ("Created", "NeedReview", "need_review", False),
            ("Uploaded", "NeedReview", "uploaded", False),
            ("Deleted", "Validated", "deleted", True),
        ],
    )
    def test_kyb_document(self, event: str, raw: str, status: str, final: bool) -> None:
        webhook = ondato_document(event, status=raw, webhook_id="w1")
        assert_maps(webhook, ("kyb_document", "doc-1", status, final, None))

    @pytest.mark.parametrize(
        ("raw", "status"), [("Validated", "validated"), ("Invalidated", "invalidated")]
    )
    def test_kyb_document_update_maps_by_payload_status(self, raw: str, status: str) -> None:
        event = canonical(ondato_document("Updated", status=raw, webhook_id="w1"))
        got = (event.subject.kind, event.subject.id, event.status, event.decided_by)
        assert got == ("kyb_document", "doc-1", status, None)
        assert fold_all(ondato_document("Updated", status=raw, webhook_id="w1")).status == status

    @pytest.mark.parametrize("raw", ["Validated", "Invalidated"])
    def test_verified_kyb_document_is_final(self, raw: str) -> None:
        assert fold_all(ondato_document("Updated", status=raw, webhook_id="w1")).final is True

    def test_kyb_document_carries_its_parent_kyb(self) -> None:
        event = canonical(ondato_document("Created", kyb="kyb-9", webhook_id="w1"))
        assert event.parent is not None and event.parent.key == "ondato/kyb/kyb-9"
        row = fold_all(ondato_document("Created", kyb="kyb-9", webhook_id="w1")).public()
        assert (row["parent_kind"], row["parent_id"]) == ("kyb", "kyb-9")


# One payload per documented type, and the subject it belongs to (design.md §4).
KYC_PAYLOAD = {"id": "kyc-1", "identityVerificationId": "idv-1", "status": "Approved"}
DOC_PAYLOAD = {"id": "doc-1", "kybIdentificationId": "kyb-1", "status": "Validated"}
FORM_PAYLOAD = {"id": "form-1", "identityVerificationId": "idv-1", "status": "Unfinished"}
KYC, KYB, DOC = "kyc/idv-1", "kyb/kyb-1", "kyb_document/doc-1"
SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "IdentityVerification.Consented": ({"id": "idv-1"}, KYC),
    "IdentityVerification.StatusChanged": ({"id": "idv-1", "status": "Pending"}, KYC),
    "KycIdentification.Created": (KYC_PAYLOAD, KYC),
    "KycIdentification.Processed": (KYC_PAYLOAD, KYC),
    "KycIdentification.Approved": (KYC_PAYLOAD, KYC),
    "KycIdentification.Rejected": (KYC_PAYLOAD, KYC),
    "KycIdentification.Updated": (KYC_PAYLOAD, KYC),
    "KybIdentification.Created": ({"id": "kyb-1"}, KYB),
    "KybIdentification.Approved": ({"id": "kyb-1"}, KYB),
    "KybIdentification.Rejected": ({"id": "kyb-1"}, KYB),
    "KybIdentification.Document.Created": (DOC_PAYLOAD, DOC),
    "KybIdentification.Document.Uploaded": (DOC_PAYLOAD, DOC),
    "KybIdentification.Document.Updated": (DOC_PAYLOAD, DOC),
    "KybIdentification.Document.Deleted": (DOC_PAYLOAD, DOC),
    "Form.Created": (FORM_PAYLOAD, KYC),
    "Form.Updated": (FORM_PAYLOAD, KYC),
    "Form.Completed": (FORM_PAYLOAD, KYC),
}
SPELLINGS = {
    "camelCase keys": lambda t: (t, False),
    "PascalCase keys": lambda t: (t, True),
    "lower-case type": lambda t: (t.lower(), False),
    "upper-case type, PascalCase keys": lambda t: (t.upper(), True),
}


class TestEveryEventTypeBelongsToItsSubject:
    def test_the_samples_cover_all_17_event_types(self) -> None:
        assert len(provider.EVENT_TYPES) == 17
        assert set(SAMPLES) == set(provider.EVENT_TYPES)

    @pytest.mark.parametrize("spelling", SPELLINGS)
    @pytest.mark.parametrize("event_type", provider.EVENT_TYPES)
    def test_event_belongs_to_its_subject_in_any_spelling(
        self, event_type: str, spelling: str
    ) -> None:
        payload, subject = SAMPLES[event_type]
        spelt, pascal = SPELLINGS[spelling](event_type)
        event = canonical(ondato(spelt, payload, webhook_id="w1", pascal=pascal))
        plain = canonical(ondato(event_type, payload, webhook_id="w1"))
        assert event.subject.key == f"ondato/{subject}"
        assert (event.status, event.final, event.decided_by) == (
            plain.status,
            plain.final,
            plain.decided_by,
        )

    def test_payload_keys_are_read_case_insensitively(self) -> None:
        payload = {"Id": "kyc-1", "IdentityVerificationId": "idv-1", "StatusReason": "ManuallyX"}
        event = canonical(ondato("KycIdentification.Approved", payload, webhook_id="w1"))
        assert (event.subject.id, event.decided_by) == ("idv-1", "manual")

    def test_unknown_type_naming_a_verification_is_unknown_history(self) -> None:
        payload = {"id": "x-1", "identityVerificationId": "idv-1", "status": "Unfinished"}
        webhook = ondato("Questionnaire.Created", payload, webhook_id="w1")
        event = canonical(webhook)
        got = (event.subject.key, event.status, event.recognised)
        assert got == ("ondato/kyc/idv-1", None, False)
        assert annotation_kind(effects(webhook)[0]) == "unknown"
        assert (fold_all(webhook).status, fold_all(webhook).version) == (None, 1)

    def test_unknown_type_without_a_verification_is_quarantined(self) -> None:
        webhook = ondato("Questionnaire.Created", {"id": "x-1", "status": "New"}, webhook_id="w1")
        assert_quarantined(normalise(deliver(webhook)))


class TestDocumentedShapes:
    """What Ondato's own examples show (Confluence webhook pages, 2022-07 .. 2023-03)."""

    @pytest.mark.parametrize("event_type", ["Form.Created", "Form.Updated", "Form.Completed"])
    def test_form_webhooks_are_history_of_their_verification(self, event_type: str) -> None:
        webhook = ondato(event_type, FORM_PAYLOAD, webhook_id="w1")
        event = canonical(webhook)
        got = (event.subject.key, event.status, event.recognised, event.provider_status)
        assert got == ("ondato/kyc/idv-1", None, True, "Unfinished")
        assert annotation_kind(effects(webhook)[0]) == "history"

    def test_a_form_never_moves_the_verification(self) -> None:
        approved = ondato_kyc("Approved", webhook_id="w1", created=T0)
        form = ondato("Form.Completed", FORM_PAYLOAD, webhook_id="w2", created=LATER)
        for order in [(approved, form), (form, approved)]:
            state = fold_all(*order)
            assert (state.status, state.final, state.version) == ("approved", True, 2)

    @pytest.mark.parametrize(
        ("event", "raw", "reason", "status"),
        [("Created", "Awaiting", "Unfinished", "in_progress"),
         ("Processed", "Awaiting", "Processing", "submitted")],
    )  # fmt: skip
    def test_kyc_progress_carries_awaiting_and_maps_by_type(
        self, event: str, raw: str, reason: str, status: str
    ) -> None:
        webhook = ondato_kyc(event, status=raw, reason=reason, webhook_id="w1")
        state = fold_all(webhook)
        got = (state.status, state.final, state.provider_status, state.reasons)
        assert got == (status, False, raw, (reason,))

    @pytest.mark.parametrize("delivered", [None, "2023-02-21T07:47:06.3234729Z"])
    def test_pascal_and_camel_case_envelopes_read_the_same(self, delivered: str | None) -> None:
        camel = ondato_idv("InProgress", webhook_id="w1", created=T7, delivered=delivered)
        pascal = ondato_idv("InProgress", webhook_id="w1", created=T7, pascal=True)
        assert deliver(camel).dedup_key == deliver(pascal).dedup_key == "ondato:webhook:w1"
        assert canonical(camel)._replace(dedup_key="") == canonical(pascal)._replace(dedup_key="")
        assert fold_all(camel) == fold_all(pascal)

    def test_a_redelivery_with_new_delivery_fields_is_a_duplicate(self) -> None:
        first = ondato_idv("InProgress", webhook_id="w1", delivered="2023-02-21T07:47:06Z")
        again = ondato_idv("InProgress", webhook_id="w1", delivered="2023-02-21T07:57:06Z")
        assert annotation_kind(effects(first, again)[1]) == "duplicate"

    def test_in_progress_is_spelt_as_one_word_on_the_wire(self) -> None:
        assert canonical(ondato_idv("InProgress", webhook_id="w1")).status == "in_progress"


class TestTheIntegratorsReference:
    def test_the_identity_verification_carries_the_external_reference(self) -> None:
        webhook = ondato_idv("Pending", webhook_id="w1", external_ref="customer-77")
        event = canonical(webhook)
        assert (event.reference, event.references) == ("customer-77", ("customer-77",))
        assert fold_all(webhook).reference == "customer-77"

    def test_kyc_identification_events_carry_none(self) -> None:
        assert canonical(ondato_kyc("Approved", webhook_id="w1")).reference is None

    def test_the_verification_keeps_it_whatever_the_order(self) -> None:
        webhooks = [
            ondato_idv("Pending", webhook_id="w1", created=T0, external_ref="customer-77"),
            ondato_kyc("Approved", webhook_id="w2", created=T3),
            ondato_idv("Completed", webhook_id="w3", created=LATER, external_ref="customer-77"),
        ]
        for order in itertools.permutations(webhooks):
            state = fold_all(*order)
            assert (state.reference, state.status) == ("customer-77", "approved")


class TestDecisionsWhereTheDocumentsAreSilent:
    def test_created_utc_with_0_3_and_7_digits_orders_as_time(self) -> None:
        webhooks = [
            ondato_idv("Completed", webhook_id="w0", created=T0),
            ondato_idv("InProgress", webhook_id="w3", created=T3),
            ondato_idv("Pending", webhook_id="w7", created=T7),
        ]
        for order in itertools.permutations(webhooks):
            state = fold_all(*order)
            assert (state.status, state.version, state.cause_event) == (
                "pending",
                3,
                "IdentityVerification.StatusChanged",
            )
            assert state.provider_status == "Pending"

    def test_pending_created_later_than_in_progress_wins_in_either_order(self) -> None:
        progress = ondato_idv("InProgress", webhook_id="w1", created=T3)
        pending = ondato_idv("Pending", webhook_id="w2", created=T7)
        assert fold_all(progress, pending).status == "pending"
        assert fold_all(pending, progress).status == "pending"
        assert annotation_kind(effects(pending, progress)[1]) == "late"

    @pytest.mark.parametrize("completed_at", [T0, LATER])
    def test_completed_never_overrides_the_approval(self, completed_at: str) -> None:
        approved = ondato_kyc("Approved", webhook_id="w1", created=T3)
        completed = ondato_idv("Completed", webhook_id="w2", created=completed_at)
        for order in [(approved, completed), (completed, approved)]:
            row = fold_all(*order).public()
            assert (row["status"], row["final"], row["decided_by"]) == ("approved", True, "auto")

    @pytest.mark.parametrize("raw", ["Aborted", "Expired"])
    def test_abort_or_expiry_never_overrides_the_decision(self, raw: str) -> None:
        rejected = ondato_kyc("Rejected", webhook_id="w1", created=T0)
        ended = ondato_idv(raw, webhook_id="w2", created=LATER)
        assert fold_all(rejected, ended).status == fold_all(ended, rejected).status == "rejected"

    def test_kyc_event_maps_by_type_not_by_payload_status(self) -> None:
        webhook = ondato_kyc("Approved", status="Rejected", webhook_id="w1")
        assert canonical(webhook).status == "approved"

    def test_manual_decision_beats_a_later_automatic_one(self) -> None:
        manual = ondato_kyc("Rejected", reason="ManuallyUnidentified", webhook_id="w1", created=T0)
        auto = ondato_kyc(
            "Approved", reason="AutomaticallyIdentified", webhook_id="w2", created=LATER
        )
        for order in [(manual, auto), (auto, manual)]:
            row = fold_all(*order).public()
            assert (row["status"], row["decided_by"]) == ("rejected", "manual")

    def test_status_reason_is_kept_as_a_reason(self) -> None:
        webhook = ondato_kyc("Rejected", reason="ManuallyUnidentified", webhook_id="w1")
        row = fold_all(webhook).public()
        assert (row["reasons"], row["provider_status"]) == (["ManuallyUnidentified"], "Rejected")


class TestFoldingAnnotations:
    def test_duplicate_webhook_id_changes_nothing(self) -> None:
        webhook = ondato_kyc("Approved", webhook_id="w1")
        assert annotation_kind(effects(webhook, webhook)[1]) == "duplicate"
        assert fold_all(webhook, webhook) == fold_all(webhook)

    def test_kyc_update_is_history_that_bumps_the_version(self) -> None:
        approved = ondato_kyc("Approved", webhook_id="w1")
        updated = ondato_kyc("Updated", status="Approved", webhook_id="w2")
        assert annotation_kind(effects(approved, updated)[1]) == "history"
        assert fold_all(approved, updated).version == fold_all(approved).version + 1

    def test_deleted_document_absorbs_a_later_arriving_validation(self) -> None:
        deleted = ondato_document("Deleted", webhook_id="w1", created=T0)
        validated = ondato_document("Updated", status="Validated", webhook_id="w2", created=LATER)
        assert annotation_kind(effects(deleted, validated)[1]) == "superseded"
        assert fold_all(deleted, validated).status == "deleted"


def raw_envelope(doc: Any) -> Webhook:
    return ("ondato", {"Content-Type": "application/json"}, json.dumps(doc).encode())


BAD_BODIES = {
    "empty": b"",
    "not json": b"<xml/>",
    "invalid utf-8": b'{"id": "w1", "type": "KycIdentification.Approved\xff"}',
    "json array": b'[{"type": "KycIdentification.Approved"}]',
    "100000 nested lists": b"[" * 100_000 + b"]" * 100_000,
    "deep payload": b'{"id":"w1","type":"KybIdentification.Created","payload":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
}


class TestBadInputIsQuarantinedNeverRaised:
    @pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
    def test_unreadable_body(self, body: bytes) -> None:
        envelope = deliver(("ondato", {}, body))
        assert_quarantined(normalise(envelope))
        assert replay([envelope]) == {}

    @pytest.mark.parametrize(
        "doc",
        [
            {"id": "w1", "payload": KYC_PAYLOAD},
            {"id": "w1", "type": "KycIdentification.Approved"},
            {"id": "w1", "type": "KycIdentification.Approved", "payload": "idv-1"},
        ],
        ids=["no type", "no payload", "payload not an object"],
    )
    def test_malformed_envelope(self, doc: dict[str, Any]) -> None:
        assert_quarantined(normalise(deliver(raw_envelope(doc))))

    @pytest.mark.parametrize("event_type", provider.EVENT_TYPES)
    def test_event_without_its_subject_id(self, event_type: str) -> None:
        webhook = ondato(event_type, {"status": "Approved", "applicationId": "a"}, webhook_id="w1")
        assert_quarantined(normalise(deliver(webhook)))

    def test_document_update_with_unknown_status(self) -> None:
        webhook = ondato_document("Updated", status="Frobnicated", webhook_id="w1")
        assert_quarantined(normalise(deliver(webhook)))

    def test_identity_verification_with_unknown_status(self) -> None:
        assert_quarantined(normalise(deliver(ondato_idv("Frobnicated", webhook_id="w1"))))

    def test_documented_suspended_status_is_history_not_a_status(self) -> None:
        active = ondato_idv("InProgress", webhook_id="w1", created=T0)
        suspended = ondato_idv("Suspended", webhook_id="w2", created=LATER)
        assert canonical(suspended).status is None
        assert (fold_all(active, suspended).status, fold_all(active, suspended).version) == (
            "in_progress",
            2,
        )
