"""iDenfy: header-typed webhooks -> canonical events -> folded projection (design.md §4)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from statemachines import normalise, replay
from statemachines.providers import idenfy
from tests.payloads import Webhook, deliver, idenfy_company, idenfy_identification
from tests.unit.folding import (
    Expected,
    annotation_kind,
    assert_maps,
    assert_quarantined,
    canonical,
    effects,
    fold_all,
)

SCAN_REF = "3af0b5c2-6ac8-11ee-b962-0242ac120002"
ATTEMPT_2 = {"start": 1_700_100_000, "finish": 1_700_100_090}
MANAGER = {"id": 7, "email": "reviewer@example.com", "name": "Ann", "surname": "Lee"}
MANUAL = "IDENTIFICATION_MANUAL_FINISHED"
RESUBMITTED = "IDENTIFICATION_RESUBMITTED"


def kyc(status: str | None, final: bool, decided_by: str | None) -> Expected:
    return ("kyc", SCAN_REF, status, final, decided_by)


class TestKycRowsOfTheMappingTable:
    def test_preliminary_auto_result_is_in_review_and_not_final(self) -> None:
        webhook = idenfy_identification(final=False, overall="REVIEWING")
        assert_maps(webhook, kyc("in_review", False, None))

    @pytest.mark.parametrize(
        ("overall", "status"),
        [("APPROVED", "approved"), ("DENIED", "rejected"), ("SUSPECTED", "suspected")],
    )
    def test_final_auto_result_is_an_automatic_decision(self, overall: str, status: str) -> None:
        webhook = idenfy_identification(final=True, overall=overall)
        assert_maps(webhook, kyc(status, True, "auto"))

    @pytest.mark.parametrize(
        ("overall", "status"),
        [("APPROVED", "approved"), ("DENIED", "rejected"), ("SUSPECTED", "suspected")],
    )
    def test_manual_result_is_a_manual_decision(self, overall: str, status: str) -> None:
        webhook = idenfy_identification(MANUAL, overall=overall, manual=True)
        assert_maps(webhook, kyc(status, True, "manual"))

    @pytest.mark.parametrize(
        ("header", "status"),
        [("IDENTIFICATION_EXPIRED", "expired"), ("IDENTIFICATION_CANCELLED", "canceled")],
    )
    def test_expiry_or_cancellation_without_decision_is_final(
        self, header: str, status: str
    ) -> None:
        webhook = idenfy_identification(header, final=True, overall="ACTIVE")
        assert_maps(webhook, kyc(status, True, None))

    @pytest.mark.parametrize(
        ("final", "overall", "expected"),
        [
            (False, "REVIEWING", kyc("in_review", False, None)),
            (True, "DENIED", kyc("rejected", True, "auto")),
        ],
    )
    def test_resubmission_applies_its_own_result_like_an_auto_result(
        self, final: bool, overall: str, expected: Expected
    ) -> None:
        assert_maps(idenfy_identification(RESUBMITTED, final=final, overall=overall), expected)

    @pytest.mark.parametrize(
        ("final", "manual", "expected"),
        [
            (False, False, kyc("in_review", False, None)),
            (True, False, kyc("approved", True, "auto")),
            (True, True, kyc("approved", True, "manual")),
        ],
    )
    def test_legacy_identification_maps_like_auto_or_manual(
        self, final: bool, manual: bool, expected: Expected
    ) -> None:
        assert_maps(idenfy_identification("IDENTIFICATION", final=final, manual=manual), expected)


# One body per non-KYC Idenfy-Event-Type, from its schema in providers.md §1.3-1.4, with the
# subject it must belong to (None: the id is not part of the contract).
SAMPLES: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "DOCUMENT_EXPIRATION": (
        {"scanRef": SCAN_REF, "clientId": "c", "expirationThreshold": "DOCUMENT_EXPIRED"},
        "document_expiration",
        SCAN_REF,
    ),
    "VIDEO_CALL_FINISHED": ({"scanRef": SCAN_REF, "clientId": "c"}, "kyc", SCAN_REF),
    "FACIAL_AUTHENTICATION": (
        {"id": "fa-1", "scanRef": SCAN_REF, "token": "tok", "status": "Success"},
        "facial_authentication",
        "fa-1",
    ),
    "AML_MONITORING": (
        {"monitoringId": "mon-1", "scanRefList": [SCAN_REF], "status": "ALERT"},
        "aml_monitoring",
        "mon-1",
    ),
    "AML_MONITORING_EXPIRATION": ({"usersToExtend": 3, "usersToExpire": 1}, "account_notice", None),
    "COMPANY_SUBMIT": ({"id": "comp-1", "submissionTime": None, "clientId": "c"}, "kyb", "comp-1"),
    "COMPANY_REVIEW": (
        {"id": "comp-1", "approvalStatus": "APPROVED", "statusChangedBy": MANAGER},
        "kyb",
        "comp-1",
    ),
    "COMPANY_AML_REVIEW": (
        {"amlReviewSubjectType": "BENEFICIARY", "id": "ben-9", "companyId": "comp-1"},
        "kyb",
        "comp-1",
    ),
    "COMPANY_INFO_REQUEST": (
        {"companyId": "comp-1", "token": "tok", "status": "REQUESTED", "manager": {"id": "m-1"}},
        "kyb",
        "comp-1",
    ),
    "COMPANY_EXPIRATION": ({"id": "comp-1", "expirationStatus": "EXPIRED"}, "kyb", "comp-1"),
    "COMPANY_DELETE": ({"companyId": "comp-1", "manager": {"id": "m-1"}}, "kyb", "comp-1"),
    "GOV_ORDERED_DOCUMENT": ({"id": "gov-1", "status": "FINISHED"}, "gov_document", "gov-1"),
    "SOS_REPORT": ({"id": "sos-1", "status": "IN_PROGRESS"}, "sos_report", "sos-1"),
    "ACCOUNT_CHECK": ({"scanRef": SCAN_REF, "status": 3, "score": 80}, "account_check", SCAN_REF),
    "BANK_VERIFICATION": ({"id": "bank-1", "riskLevel": "LOW"}, "bank_verification", "bank-1"),
    "BANK_CARD_VERIFICATION_COMPLETED": (
        {"id": "card-1", "status": "MATCH"},
        "bank_card_verification",
        "card-1",
    ),
    "AGE_ESTIMATION": ({"scanRef": SCAN_REF, "status": "COMPLETED"}, "age_estimation", SCAN_REF),
}


def sample(header: str, **changes: Any) -> Webhook:
    return idenfy_company(header, **{**SAMPLES[header][0], **changes})


class TestKybRowsOfTheMappingTable:
    def test_company_submit_is_submitted(self) -> None:
        webhook = sample("COMPANY_SUBMIT", submissionTime="2026-11-20T08:00:00Z")
        assert_maps(webhook, ("kyb", "comp-1", "submitted", False, None))

    @pytest.mark.parametrize(
        ("approval", "status"), [("APPROVED", "approved"), ("DENIED", "rejected")]
    )
    def test_company_review_is_a_manual_decision(self, approval: str, status: str) -> None:
        webhook = sample("COMPANY_REVIEW", approvalStatus=approval)
        assert_maps(webhook, ("kyb", "comp-1", status, True, "manual"))

    def test_company_info_request_is_info_requested(self) -> None:
        webhook = sample("COMPANY_INFO_REQUEST", date="2026-11-21T08:00:00Z")
        assert_maps(webhook, ("kyb", "comp-1", "info_requested", False, None))

    def test_company_expiration_is_expired(self) -> None:
        assert_maps(sample("COMPANY_EXPIRATION"), ("kyb", "comp-1", "expired", True, None))

    def test_company_delete_is_deleted(self) -> None:
        webhook = sample("COMPANY_DELETE", date="2026-11-23T08:00:00Z")
        assert_maps(webhook, ("kyb", "comp-1", "deleted", True, None))


class TestEveryEventTypeBelongsToItsSubject:
    def test_the_samples_cover_all_23_event_types(self) -> None:
        assert len(idenfy.EVENT_TYPES) == 23
        assert set(SAMPLES) | set(idenfy.KYC_EVENTS) == set(idenfy.EVENT_TYPES)

    @pytest.mark.parametrize("header", idenfy.KYC_EVENTS)
    def test_kyc_event_belongs_to_the_scan_ref(self, header: str) -> None:
        event = canonical(idenfy_identification(header))
        assert (event.subject.key, event.event_type) == (f"idenfy/kyc/{SCAN_REF}", header)

    @pytest.mark.parametrize("header", sorted(SAMPLES))
    def test_event_belongs_to_the_subject_its_schema_names(self, header: str) -> None:
        _, kind, subject_id = SAMPLES[header]
        event = canonical(sample(header))
        assert (event.subject.provider, event.subject.kind) == ("idenfy", kind)
        assert subject_id is None or event.subject.id == subject_id
        assert fold_all(sample(header)).version == 1

    def test_aml_monitoring_alert_is_the_monitoring_subjects_alert(self) -> None:
        assert_maps(sample("AML_MONITORING"), ("aml_monitoring", "mon-1", "alert", False, None))

    def test_aml_monitoring_expiration_is_an_account_notice_without_status(self) -> None:
        event = canonical(sample("AML_MONITORING_EXPIRATION"))
        assert (event.subject.kind, event.status) == ("account_notice", None)

    def test_company_aml_review_belongs_to_company_id_and_sets_no_status(self) -> None:
        state = fold_all(sample("COMPANY_REVIEW"), sample("COMPANY_AML_REVIEW"))
        assert (state.subject.id, state.status, state.version) == ("comp-1", "approved", 2)

    def test_event_type_header_is_read_case_insensitively(self) -> None:
        event = canonical(idenfy_identification(MANUAL.lower(), manual=True))
        assert (event.status, event.decided_by) == ("approved", "manual")

    def test_fraud_and_mismatch_tags_become_reasons(self) -> None:
        webhook = idenfy_identification(
            overall="SUSPECTED", fraud_tags=("VIRTUAL_CAMERA",), mismatch_tags=("NAME",)
        )
        row = fold_all(webhook).public()
        assert (row["reasons"], row["provider_status"]) == (["VIRTUAL_CAMERA", "NAME"], "SUSPECTED")


class TestDecisionsWhereTheDocumentsAreSilent:
    @pytest.mark.parametrize("overall", ["REVIEWING", "SUSPECTED", "DENIED"])
    def test_preliminary_result_means_in_review_whatever_its_overall(self, overall: str) -> None:
        webhook = idenfy_identification(final=False, overall=overall)
        assert_maps(webhook, kyc("in_review", False, None))

    @pytest.mark.parametrize(
        ("header", "overall", "status"),
        [
            ("IDENTIFICATION_EXPIRED", "ACTIVE", "expired"),
            ("IDENTIFICATION_EXPIRED", "DENIED", "expired"),
            ("IDENTIFICATION_CANCELLED", "EXPIRED", "canceled"),
            ("IDENTIFICATION_CANCELLED", "APPROVED", "canceled"),
        ],
    )
    def test_header_not_overall_tells_expired_from_canceled(
        self, header: str, overall: str, status: str
    ) -> None:
        assert canonical(idenfy_identification(header, overall=overall)).status == status

    def test_legacy_callback_without_header_is_an_identification(self) -> None:
        _, headers, body = idenfy_identification(final=True, overall="DENIED")
        del headers["Idenfy-Event-Type"]
        event = canonical(("idenfy", headers, body))
        got = (event.event_type, event.status, event.decided_by)
        assert got == ("IDENTIFICATION", "rejected", "auto")

    def test_callback_without_header_and_without_result_is_quarantined(self) -> None:
        webhook = ("idenfy", {"Content-Type": "application/json"}, b'{"clientId": "c"}')
        assert_quarantined(normalise(deliver(webhook)))

    def test_resubmission_with_later_start_time_opens_attempt_two(self) -> None:
        first = idenfy_identification(final=True, overall="DENIED")
        again = idenfy_identification(RESUBMITTED, final=False, overall="REVIEWING", **ATTEMPT_2)
        row = fold_all(first, again).public()
        got = (row["attempt"], row["status"], row["final"], row["decided_by"])
        assert got == (2, "in_review", False, None)

    def test_late_event_of_attempt_one_is_superseded_by_attempt_two(self) -> None:
        first = idenfy_identification(final=False, overall="REVIEWING")
        again = idenfy_identification(RESUBMITTED, final=True, overall="APPROVED", **ATTEMPT_2)
        late = idenfy_identification(MANUAL, overall="DENIED", manual=True)
        assert annotation_kind(effects(first, again, late)[-1]) == "superseded"
        row = fold_all(first, again, late).public()
        assert (row["attempt"], row["status"], row["decided_by"]) == (2, "approved", "auto")

    def test_two_attempts_give_the_same_projection_in_every_arrival_order(self) -> None:
        webhooks = [
            idenfy_identification(final=False, overall="REVIEWING"),
            idenfy_identification(MANUAL, overall="DENIED", manual=True),
            idenfy_identification(RESUBMITTED, final=False, overall="REVIEWING", **ATTEMPT_2),
            idenfy_identification(MANUAL, overall="APPROVED", manual=True, **ATTEMPT_2),
        ]
        seen = set()
        for order in itertools.permutations(webhooks):
            state = fold_all(*order)
            seen.add((state.status, state.final, state.decided_by, state.attempt, state.version))
        assert seen == {("approved", True, "manual", 2, 4)}

    def test_company_submit_arriving_after_the_review_does_not_undo_it(self) -> None:
        review, submit = sample("COMPANY_REVIEW"), sample("COMPANY_SUBMIT")
        assert fold_all(review, submit).status == "approved"
        assert fold_all(submit, review).status == "approved"


class TestFoldingAnnotations:
    def test_duplicate_delivery_changes_nothing(self) -> None:
        webhook = idenfy_identification(final=True, overall="APPROVED")
        assert annotation_kind(effects(webhook, webhook)[1]) == "duplicate"
        assert fold_all(webhook, webhook) == fold_all(webhook)
        assert fold_all(webhook, webhook).version == 1

    def test_preliminary_result_after_the_manual_decision_is_late(self) -> None:
        manual = idenfy_identification(MANUAL, manual=True)
        preliminary = idenfy_identification(final=False, overall="REVIEWING")
        assert annotation_kind(effects(manual, preliminary)[1]) == "late"
        row = fold_all(manual, preliminary).public()
        assert (row["status"], row["decided_by"], row["version"]) == ("approved", "manual", 2)

    def test_expiry_never_overrides_a_decision_of_the_same_attempt(self) -> None:
        decided = idenfy_identification(final=True, overall="DENIED")
        expired = idenfy_identification("IDENTIFICATION_EXPIRED", overall="EXPIRED")
        assert fold_all(decided, expired).status == "rejected"
        assert fold_all(expired, decided).status == "rejected"

    def test_kyb_deletion_absorbs_a_later_arriving_approval(self) -> None:
        delete, review = sample("COMPANY_DELETE"), sample("COMPANY_REVIEW")
        assert annotation_kind(effects(delete, review)[1]) == "superseded"
        assert fold_all(delete, review).status == "deleted"

    def test_company_aml_review_is_history_that_bumps_the_version(self) -> None:
        review, aml = sample("COMPANY_REVIEW"), sample("COMPANY_AML_REVIEW")
        assert annotation_kind(effects(review, aml)[1]) == "history"
        assert (fold_all(review, aml).version, fold_all(review).version) == (2, 1)

    def test_unknown_event_type_with_scan_ref_lands_in_history_as_unknown(self) -> None:
        webhook = idenfy_company("IDENTIFICATION_FROBNICATED", scanRef=SCAN_REF)
        event = canonical(webhook)
        assert (event.subject.kind, event.status, event.recognised) == ("kyc", None, False)
        assert annotation_kind(effects(webhook)[0]) == "unknown"
        assert fold_all(webhook).version == 1


BAD_BODIES = {
    "empty": b"",
    "blank": b"   ",
    "not json": b"not json",
    "invalid utf-8": b"\xff\xfe\x00garbage",
    "invalid utf-8 in a string": b'{"scanRef": "a\xff", "final": true}',
    "json array": b'[{"scanRef": "x"}]',
    "json null": b"null",
    "100000 nested lists": b"[" * 100_000 + b"]" * 100_000,
    "100000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
}
NO_ID = {"status": {"overall": "APPROVED"}, "final": True, "approvalStatus": "APPROVED"}


class TestBadInputIsQuarantinedNeverRaised:
    @pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
    def test_unreadable_body(self, body: bytes) -> None:
        headers = {"Idenfy-Event-Type": "IDENTIFICATION_AUTO_FINISHED"}
        envelope = deliver(("idenfy", headers, body))
        assert_quarantined(normalise(envelope))
        assert replay([envelope]) == {}

    @pytest.mark.parametrize(
        "header", sorted(set(idenfy.EVENT_TYPES) - {"AML_MONITORING_EXPIRATION"})
    )
    def test_event_without_its_subject_id(self, header: str) -> None:
        assert_quarantined(normalise(deliver(idenfy_company(header, **NO_ID))))

    @pytest.mark.parametrize(
        ("header", "changes"),
        [
            ("AML_MONITORING", {"status": "FROBNICATED"}),
            ("DOCUMENT_EXPIRATION", {"expirationThreshold": "SOMEDAY"}),
            ("BANK_CARD_VERIFICATION_COMPLETED", {"status": "FROBNICATED"}),
            ("FACIAL_AUTHENTICATION", {"status": "Frobnicated"}),
            ("GOV_ORDERED_DOCUMENT", {"status": "FROBNICATED"}),
            ("AGE_ESTIMATION", {"status": "FROBNICATED"}),
        ],
    )
    def test_unknown_status(self, header: str, changes: dict[str, Any]) -> None:
        assert_quarantined(normalise(deliver(sample(header, **changes))))

    def test_final_identification_with_unknown_overall(self) -> None:
        webhook = idenfy_identification(final=True, overall="FROBNICATED")
        assert_quarantined(normalise(deliver(webhook)))

    @pytest.mark.parametrize(
        ("header", "changes"),
        [
            ("COMPANY_REVIEW", {"approvalStatus": "FROBNICATED"}),
            ("COMPANY_INFO_REQUEST", {"status": "FROBNICATED"}),
            ("COMPANY_EXPIRATION", {"expirationStatus": "FROBNICATED"}),
        ],
    )
    def test_unknown_kyb_status(self, header: str, changes: dict[str, Any]) -> None:
        assert_quarantined(normalise(deliver(sample(header, **changes))))

    def test_unknown_event_type_without_scan_ref(self) -> None:
        assert_quarantined(normalise(deliver(idenfy_company("SOMETHING_NEW", id="x"))))
