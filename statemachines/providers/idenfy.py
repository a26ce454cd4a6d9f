"""iDenfy: the event type is only in the `Idenfy-Event-Type` header (providers.md §1.2).

KYC attempts are told apart by `startTime` (design.md §4c); a preliminary AUTO_FINISHED
(`final: false`) means in_review whatever its `overall`; EXPIRED vs CANCELLED is decided by
the header. KYB: the company is `id` in SUBMIT/REVIEW/EXPIRATION but `companyId` in
INFO_REQUEST/DELETE/AML_REVIEW (where `id` is the reviewed person's). iDenfy's other
services (AML monitoring, document expiry, facial authentication, …) are in `idenfy_services`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statemachines.envelope import RawEnvelope
from statemachines.events import (
    AUTO_DECISION,
    MANUAL_DECISION,
    PRELIMINARY,
    TERMINAL,
    Normalised,
    Order,
    event,
    history,
    unrecognised,
)
from statemachines.machines import lifecycle
from statemachines.payload import integer, parse_object, strings, text, utc_ticks
from statemachines.providers import idenfy_services as services

JsonObject = dict[str, Any]
Handler = Callable[[RawEnvelope, str, JsonObject], Normalised]

DECISIONS = {"APPROVED": "approved", "DENIED": "rejected", "SUSPECTED": "suspected"}
EXPIRED_OVERALL = {"EXPIRED", "EXPIRED-DELETED", "DELETED"}
KYC_EVENTS = (
    "IDENTIFICATION",
    "IDENTIFICATION_AUTO_FINISHED",
    "IDENTIFICATION_MANUAL_FINISHED",
    "IDENTIFICATION_EXPIRED",
    "IDENTIFICATION_CANCELLED",
    "IDENTIFICATION_RESUBMITTED",
)


def normalise(env: RawEnvelope) -> Normalised:
    doc = parse_object(env.body)
    header = (env.header("idenfy-event-type") or "").strip().upper()
    if isinstance(doc, str):
        return unrecognised(env, doc, header or None)
    if not header:
        # Pre-header legacy callbacks: a result body without the header is IDENTIFICATION.
        if text(doc, "scanRef") and isinstance(doc.get("status"), dict):
            return _kyc(env, "IDENTIFICATION", doc)
        return unrecognised(env, "missing Idenfy-Event-Type header")
    handler = HANDLERS.get(header)
    if handler is not None:
        return handler(env, header, doc)
    scan_ref = text(doc, "scanRef")
    if scan_ref:
        return history(env, "kyc", scan_ref, header, "unknown iDenfy event type", recognised=False)
    return unrecognised(env, f"unknown iDenfy event type {header!r} without scanRef", header)


# --- KYC -----------------------------------------------------------------------------
def _kyc(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    scan_ref = text(doc, "scanRef")
    if scan_ref is None:
        return unrecognised(env, f"{header} without scanRef", header)
    status = doc.get("status")
    overall = (text(status, "overall") or "").upper()
    facts = {
        "provider_status": overall or None,
        "reasons": strings(status, "fraudTags")
        + strings(status, "mismatchTags")
        + strings(status, "suspicionReasons"),  # legacy name of fraudTags
    }
    attempt = integer(doc, "startTime") or 0
    time = integer(doc, "finishTime") or 0
    final = doc.get("final") is True

    def emit(status: str, klass: int, decided_by: str | None, is_final: bool) -> Normalised:
        order = Order(klass=klass, time=time, attempt=attempt)
        return event(
            env,
            "kyc",
            scan_ref,
            header,
            status,
            order,
            final=is_final,
            decided_by=decided_by,
            **facts,
        )

    if header == "IDENTIFICATION_EXPIRED":
        return emit("expired", TERMINAL, None, True)
    if header == "IDENTIFICATION_CANCELLED":
        return emit("canceled", TERMINAL, None, True)
    if not final:
        return emit("in_review", PRELIMINARY, None, False)
    manual = header == "IDENTIFICATION_MANUAL_FINISHED" or (
        header == "IDENTIFICATION" and _reviewed_by_hand(doc)
    )
    if overall in DECISIONS:
        if manual:
            return emit(DECISIONS[overall], MANUAL_DECISION, "manual", True)
        return emit(DECISIONS[overall], AUTO_DECISION, "auto", True)
    if overall in EXPIRED_OVERALL:
        return emit("expired", TERMINAL, None, True)
    if overall in {"REVIEWING", "ACTIVE"}:  # final but undecided: still under review
        return emit("in_review", PRELIMINARY, None, False)
    return unrecognised(env, f"{header} with final result but overall {overall!r}", header)


def _reviewed_by_hand(doc: JsonObject) -> bool:
    """Legacy IDENTIFICATION: a manual result fills manualDocument / manualFace."""
    for field in ("manualDocument", "manualFace"):
        value = text(doc, "status", field)
        if value and not value.endswith("NOT_CHECKED"):
            return True
    return False


# --- KYB (company) ---------------------------------------------------------------------
def _kyb(
    env: RawEnvelope,
    header: str,
    company: str | None,
    status: str | None,
    time: int = 0,
    **facts: Any,
) -> Normalised:
    if company is None:
        return unrecognised(env, f"{header} without a company id", header)
    if status is None:
        return history(
            env,
            "kyb",
            company,
            header,
            facts.pop("note", "carries no status"),
            provider_status=facts.get("provider_status"),
        )
    order = Order(klass=lifecycle("kyb").tiers[status], time=time)
    return event(env, "kyb", company, header, status, order, **facts)


def _company_submit(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    company = text(doc, "id") or text(doc, "companyId")
    return _kyb(env, header, company, "submitted", utc_ticks(doc.get("submissionTime")) or 0)


def _company_review(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    company = text(doc, "id") or text(doc, "companyId")
    approval = (text(doc, "approvalStatus") or "").upper()
    status = {"APPROVED": "approved", "DENIED": "rejected"}.get(approval)
    if status is None and approval:  # only a null approvalStatus means "no decision"
        return unrecognised(env, f"{header} with unknown approvalStatus {approval!r}", header)
    reviewer = doc.get("statusChangedBy")
    return _kyb(
        env,
        header,
        company,
        status,
        provider_status=approval or None,
        reasons=tuple(r for r in (text(doc, "denyReason"),) if r),
        decided_by="manual" if isinstance(reviewer, dict) and reviewer else None,
        final=status is not None,
        note="review without approval status",
    )


def _company_info_request(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    state = (text(doc, "status") or "").upper()
    if state not in {"REQUESTED", "EXPIRED", "CANCELED"}:
        return unrecognised(env, f"{header} with unknown status {state!r}", header)
    status = "info_requested" if state == "REQUESTED" else None
    return _kyb(
        env,
        header,
        text(doc, "companyId"),
        status,
        utc_ticks(doc.get("date")) or 0,
        provider_status=state or None,
        note=f"information request {state.lower()}",
    )


def _company_expiration(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    state = (text(doc, "expirationStatus") or "").upper()
    if state not in {"", "PENDING", "EXPIRED"}:
        return unrecognised(env, f"{header} with unknown expirationStatus {state!r}", header)
    status = "expired" if state == "EXPIRED" else None
    return _kyb(
        env,
        header,
        text(doc, "id") or text(doc, "companyId"),
        status,
        provider_status=state or None,
        final=status is not None,
        note="verification nearing expiry",
    )


def _company_delete(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    return _kyb(
        env,
        header,
        text(doc, "companyId") or text(doc, "id"),
        "deleted",
        utc_ticks(doc.get("date")) or 0,
        final=True,
    )


def _company_aml_review(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    subject_type = (text(doc, "amlReviewSubjectType") or "COMPANY").lower()
    return _kyb(
        env,
        header,
        text(doc, "companyId"),
        None,
        provider_status=text(doc, "overallStatus"),
        note=f"AML review of {subject_type}",
    )


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(KYC_EVENTS, _kyc),
    "DOCUMENT_EXPIRATION": services.document_expiration,
    "VIDEO_CALL_FINISHED": services.video_call,
    "FACIAL_AUTHENTICATION": services.facial_authentication,
    "AML_MONITORING": services.aml_monitoring,
    "AML_MONITORING_EXPIRATION": services.aml_monitoring_expiration,
    "COMPANY_SUBMIT": _company_submit,
    "COMPANY_REVIEW": _company_review,
    "COMPANY_AML_REVIEW": _company_aml_review,
    "COMPANY_INFO_REQUEST": _company_info_request,
    "COMPANY_EXPIRATION": _company_expiration,
    "COMPANY_DELETE": _company_delete,
    "GOV_ORDERED_DOCUMENT": services.order_status("gov_document"),
    "SOS_REPORT": services.order_status("sos_report"),
    "ACCOUNT_CHECK": services.account_check,
    "BANK_VERIFICATION": services.bank_verification,
    "BANK_CARD_VERIFICATION_COMPLETED": services.bank_card_verification,
    "AGE_ESTIMATION": services.age_estimation,
}
EVENT_TYPES = tuple(HANDLERS)
