"""iDenfy: header-typed webhooks -> canonical events -> folded projection (design.md §4)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from statemachines import normalise, replay
from statemachines.providers import idenfy
from tests import payloads
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
CANCELLED = "IDENTIFICATION_CANCELLED"


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
            # A filled final analysis is "made by an automatic system and human": no claim.
            (True, True, kyc("approved", True, None)),
        ],
    )
    def test_legacy_identification_maps_by_final_and_what_the_body_proves(
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
        # Header-less callbacks predate `final` (2018-2021): this one is the single final
        # callback of the 2020-08 docs, its final analysis filled.
        _, headers, body = idenfy_identification(final=None, overall="DENIED", manual=True)
        del headers["Idenfy-Event-Type"]
        event = canonical(("idenfy", headers, body))
        got = (event.event_type, event.status, event.final, event.decided_by)
        assert got == ("IDENTIFICATION", "rejected", True, None)

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
            ("ACCOUNT_CHECK", {"status": None}),
            ("AML_MONITORING_EXPIRATION", {"usersToExtend": None, "usersToExpire": None}),
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


def legacy(**changes: Any) -> Webhook:
    """A result callback as iDenfy's docs showed it 2018-2021: header IDENTIFICATION (or
    none), no `final` key."""
    return idenfy_identification("IDENTIFICATION", **{"final": None, **changes})


def with_data(webhook: Webhook, path: tuple[str, ...], value: Any) -> Webhook:
    """The webhook with one body field set (re-serialised: a different body)."""
    provider, headers, body = webhook
    doc = json.loads(body)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return provider, headers, json.dumps(doc).encode()


def reheader(webhook: Webhook, header: str) -> Webhook:
    """The same signed bytes sent again under another (unsigned) event-type header."""
    provider, headers, body = webhook
    return provider, {**headers, "Idenfy-Event-Type": header}, body


class TestLegacyCallbacksWithoutFinal:
    """Finality of bodies without `final`, by what iDenfy's docs said in their era."""

    def test_automatic_callback_of_the_two_callback_era_awaits_the_manual_one(self) -> None:
        # 2018-12 .. 2020-08: "two consecutive callbacks", the automatic one manual* null.
        assert_maps(legacy(manual=False), kyc("in_review", False, None))

    def test_single_callback_from_2020_08_is_final(self) -> None:
        # 2020-08 on: "one callback per identification", final status in `overall`.
        assert_maps(legacy(manual=True, overall="DENIED"), kyc("rejected", True, None))

    def test_the_two_callbacks_give_the_final_result_in_either_order(self) -> None:
        automatic, manual = legacy(manual=False), legacy(manual=True, overall="DENIED")
        for order in ((automatic, manual), (manual, automatic)):
            state = fold_all(*order)
            assert (state.status, state.final, state.version) == ("rejected", True, 2)

    def test_manually_changed_data_proves_a_human_decided(self) -> None:
        webhook = with_data(legacy(manual=True), ("data", "manuallyDataChanged"), True)
        assert_maps(webhook, kyc("approved", True, "manual"))

    def test_final_analysis_that_differs_from_the_automatic_one_is_manual(self) -> None:
        webhook = with_data(legacy(manual=True), ("status", "autoFace"), "FACE_UNCERTAIN")
        assert_maps(webhook, kyc("approved", True, "manual"))

    def test_not_checked_final_analysis_counts_as_none(self) -> None:
        webhook = with_data(legacy(manual=False), ("status", "manualFace"), "FACE_NOT_CHECKED")
        assert canonical(webhook).status == "in_review"

    @pytest.mark.parametrize("overall", ["EXPIRED", "EXPIRED-DELETED"])
    def test_an_unused_expired_token_is_expired_without_final(self, overall: str) -> None:
        assert_maps(legacy(manual=False, overall=overall), kyc("expired", True, None))

    @pytest.mark.parametrize("overall", ["ARCHIVED", "DELETED"])
    def test_archived_or_deleted_is_history_never_a_decision(self, overall: str) -> None:
        event = canonical(idenfy_identification(final=True, overall=overall))
        assert (event.status, event.recognised, event.provider_status) == (None, True, overall)
        decided = idenfy_identification(final=True, overall="APPROVED")
        record = idenfy_identification(final=True, overall=overall, finish=1_700_009_000)
        for order in ((decided, record), (record, decided)):
            state = fold_all(*order)
            assert (state.status, state.decided_by, state.version) == ("approved", "auto", 2)

    def test_float_start_and_finish_times_keep_their_meaning(self) -> None:
        # iDenfy's 2019-04 example: "startTime": 1554726960.324056.
        floated = legacy(manual=False, start=1554726960.324056, finish=1554727002.254685)
        event = canonical(floated)
        assert (event.order.attempt, event.order.time) == (1554726960, 1554727002)

    def test_float_and_integer_times_of_one_second_are_one_attempt(self) -> None:
        automatic = legacy(manual=False, start=1554726960.324056, finish=1554727002.254685)
        manual = legacy(manual=True, overall="DENIED", start=1554726960, finish=1554727002)
        state = fold_all(automatic, manual)
        assert (state.attempt, state.attempt_keys, state.status) == (1, (1554726960,), "rejected")

    def test_a_later_float_start_time_is_a_later_attempt(self) -> None:
        first = legacy(manual=True, overall="DENIED", start=1554726960.5)
        again = legacy(manual=True, overall="APPROVED", start=1554727960.25, finish=1554728000.0)
        for order in ((first, again), (again, first)):
            state = fold_all(*order)
            assert (state.attempt, state.status) == (2, "approved")


class TestAmlMonitoringStatuses:
    @pytest.mark.parametrize(
        ("alert_status", "status"),
        [
            ("ACCEPTED", "active"),
            ("ALERT", "alert"),
            ("DECLINED", "stopped"),
            ("PENDING", "pending"),
        ],
    )
    def test_v2_alert_status_maps_as_the_migration_guide_says(
        self, alert_status: str, status: str
    ) -> None:
        doc = {"monitoringId": "mon-1", "alertStatus": alert_status}
        assert canonical(idenfy_company("AML_MONITORING", **doc)).status == status

    def test_v3_status_is_read_when_both_are_sent(self) -> None:
        doc = {"monitoringId": "mon-1", "alertStatus": "DECLINED", "status": "STOPPED"}
        event = canonical(idenfy_company("AML_MONITORING", **doc))
        assert (event.status, event.provider_status) == ("stopped", "STOPPED")


class TestTheSignedBodyDecidesTheOutcome:
    """iDenfy signs the body only: the unsigned header may only choose among the readings
    the body supports, and a signed body under another header is the same delivery."""

    def test_a_preliminary_body_under_the_cancel_header_stays_in_review(self) -> None:
        forged = reheader(idenfy_identification(final=False, overall="REVIEWING"), CANCELLED)
        event = canonical(forged)
        assert (event.status, event.final) == ("in_review", False)

    def test_an_automatic_decision_under_the_manual_header_stays_automatic(self) -> None:
        forged = reheader(idenfy_identification(final=True, overall="APPROVED"), MANUAL)
        event = canonical(forged)
        assert (event.status, event.decided_by, event.order.klass) == ("approved", "auto", 4)

    def test_a_proven_manual_decision_under_the_auto_header_stays_manual(self) -> None:
        manual = with_data(idenfy_identification(MANUAL), ("data", "manuallyDataChanged"), True)
        event = canonical(reheader(manual, "IDENTIFICATION_AUTO_FINISHED"))
        assert (event.decided_by, event.order.klass) == ("manual", 5)

    @pytest.mark.parametrize("final", [True, False, None])
    def test_an_ending_without_a_result_ends_whatever_its_final_flag(
        self, final: bool | None
    ) -> None:
        # The docs give no `final` value for EXPIRED/CANCELLED ("—"): only a preliminary
        # result (final: false on a decision or REVIEWING) refuses the ending.
        ended = idenfy_identification(CANCELLED, final=final, overall="ACTIVE")
        assert (canonical(ended).status, canonical(ended).final) == ("canceled", True)

    def test_the_header_chooses_expiry_or_cancellation_of_a_final_body(self) -> None:
        ended = idenfy_identification("IDENTIFICATION_EXPIRED", final=True, overall="EXPIRED")
        assert canonical(ended).status == "expired"
        assert canonical(reheader(ended, CANCELLED)).status == "canceled"

    def test_the_header_chooses_who_decided_only_when_the_body_cannot_tell(self) -> None:
        ambiguous = idenfy_identification(final=True, overall="DENIED", manual=True)
        assert canonical(ambiguous).decided_by == "auto"
        assert canonical(reheader(ambiguous, MANUAL)).decided_by == "manual"

    def test_the_delivery_key_is_the_signed_bytes_alone(self) -> None:
        webhook = idenfy_identification(final=False, overall="REVIEWING")
        keys = {deliver(reheader(webhook, header)).dedup_key for header in idenfy.KYC_EVENTS}
        assert keys == {f"idenfy:sha256:{deliver(webhook).body_sha256}"}

    @pytest.mark.parametrize(
        ("webhook", "header"),
        [
            (idenfy_identification(final=False, overall="REVIEWING"), CANCELLED),
            (idenfy_identification(final=False, overall="REVIEWING"), "IDENTIFICATION_EXPIRED"),
            (idenfy_identification(final=True, overall="APPROVED"), MANUAL),
            (idenfy_identification(final=True, overall="DENIED", manual=True), MANUAL),
            (idenfy_identification(MANUAL, overall="DENIED"), CANCELLED),
            (idenfy_identification(final=True, overall="APPROVED"), RESUBMITTED),
        ],
        ids=[
            "review->cancel",
            "review->expire",
            "auto->manual",
            "ambiguous->manual",
            "manual->cancel",
            "auto->resubmitted",
        ],
    )
    def test_a_resent_body_under_another_header_moves_nothing(
        self, webhook: Webhook, header: str
    ) -> None:
        forged = reheader(webhook, header)
        assert annotation_kind(effects(webhook, forged)[1]) == "duplicate"
        assert fold_all(webhook, forged) == fold_all(webhook)

    @pytest.mark.parametrize("header", sorted(SAMPLES))
    def test_a_result_body_under_another_kind_of_header_is_refused(self, header: str) -> None:
        # Another subject would not have this delivery in its dedup set: refuse outright.
        forged = reheader(idenfy_identification(final=True, overall="APPROVED"), header)
        assert_quarantined(normalise(deliver(forged)))

    @pytest.mark.parametrize("header", ["ACCOUNT_CHECK", "AGE_ESTIMATION", "VIDEO_CALL_FINISHED"])
    def test_another_kind_of_body_under_a_result_header_is_refused(self, header: str) -> None:
        for kyc_header in idenfy.KYC_EVENTS:
            assert_quarantined(normalise(deliver(reheader(sample(header), kyc_header))))

    def test_a_header_less_video_call_body_is_the_video_call(self) -> None:
        # VideoCall.md (2020-08): videoCallAnswers, date, boolean status, scanRef, clientId.
        body = {"videoCallAnswers": {}, "date": "2020-08-14 12:48:08.085275+00:00",
                "status": True, "scanRef": SCAN_REF, "clientId": "c-9"}  # fmt: skip
        webhook = ("idenfy", {"Content-Type": "application/json"}, json.dumps(body).encode())
        event = canonical(webhook)
        got = (event.subject.key, event.event_type, event.status, event.reference)
        assert got == (f"idenfy/kyc/{SCAN_REF}", "VIDEO_CALL_FINISHED", None, "c-9")

    def test_even_in_a_log_keyed_by_header_the_resent_body_is_a_duplicate(self) -> None:
        # Logs written before the key left out the header hold per-header keys.
        webhook = idenfy_identification(final=False, overall="REVIEWING")
        old_style = [
            replace(env, dedup_key=f"idenfy:{env.header('idenfy-event-type')}:{env.body_sha256}")
            for env in (deliver(webhook, 0), deliver(reheader(webhook, CANCELLED), 1))
        ]
        state = replay(old_style)[f"idenfy/kyc/{SCAN_REF}"]
        assert (state.status, state.final, state.version) == ("in_review", False, 1)


class TestTheIntegratorsReference:
    def test_client_id_is_the_reference_and_external_ref_is_kept_too(self) -> None:
        webhook = idenfy_identification(client_id="user-7", external_ref="order-19")
        event = canonical(webhook)
        assert (event.reference, event.references) == ("user-7", ("user-7", "order-19"))
        state = fold_all(webhook)
        assert (state.reference, state.references) == ("user-7", ("order-19", "user-7"))

    def test_a_body_without_references_carries_none(self) -> None:
        event = canonical(sample("BANK_VERIFICATION"))
        assert (event.reference, event.references) == (None, ())

    def test_the_reference_is_the_same_whatever_the_order(self) -> None:
        webhooks = [
            idenfy_identification(final=False, overall="REVIEWING", client_id="b-client"),
            idenfy_identification(MANUAL, client_id="a-client", external_ref="x-1"),
            payloads.idenfy("VIDEO_CALL_FINISHED", {"scanRef": SCAN_REF}),
        ]
        seen = {
            (state.reference, state.references)
            for order in itertools.permutations(webhooks)
            for state in [fold_all(*order)]
        }
        assert seen == {("a-client", ("a-client", "b-client", "x-1"))}

    def test_an_overlong_reference_is_not_kept(self) -> None:
        event = canonical(idenfy_identification(client_id="c" * 201, external_ref="short"))
        assert (event.reference, event.references) == (None, ("short",))
