"""iDenfy: the event type is only in the `Idenfy-Event-Type` header (providers.md §1.2).

KYC attempts are told apart by `startTime` (design.md §4c); a preliminary AUTO_FINISHED
(`final: false`) means in_review whatever its `overall`; EXPIRED vs CANCELLED is decided by
the header. KYB: the company is `id` in SUBMIT/REVIEW/EXPIRATION but `companyId` in
INFO_REQUEST/DELETE/AML_REVIEW (where `id` is the reviewed person's).
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
from statemachines.payload import integer, parse_object, strings, text, token, utc_ticks

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


# --- Monitoring, documents and the small services ------------------------------------
def _small(
    env: RawEnvelope,
    header: str,
    kind: str,
    subject_id: str | None,
    status: str | None,
    time: int = 0,
    **facts: Any,
) -> Normalised:
    """One event of a small lifecycle; `status` must be a status of `kind`."""
    if subject_id is None:
        return unrecognised(env, f"{header} without its id", header)
    tiers = lifecycle(kind).tiers
    if status is None or status not in tiers:
        shown = facts.get("provider_status")
        return unrecognised(env, f"{header} with unknown status {shown!r}", header)
    order = Order(klass=tiers[status], time=time)
    return event(env, kind, subject_id, header, status, order, **facts)


def _aml_monitoring(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    current = (text(doc, "status") or "").upper()  # v3
    legacy = (text(doc, "alertStatus") or "").upper()  # v2, deprecated
    status = {"ACTIVE": "active", "STOPPED": "stopped", "PENDING": "pending", "ALERT": "alert"}.get(
        current
    )
    if status is None:
        status = {
            "ALERT": "alert",
            "PENDING": "pending",
            "ACCEPTED": "active",
            "DECLINED": "active",
        }.get(legacy)
    reasons = tuple(
        f"{name}:{value}"
        for name in ("pepsStatus", "sanctionsStatus", "adverseMediaStatus")
        if (value := text(doc, name))
    )
    return _small(
        env,
        header,
        "aml_monitoring",
        text(doc, "monitoringId"),
        status,
        provider_status=current or legacy or None,
        reasons=reasons,
    )


def _aml_monitoring_expiration(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    note = (
        f"{integer(doc, 'usersToExtend') or 0} monitored users to extend, "
        f"{integer(doc, 'usersToExpire') or 0} to expire"
    )
    return history(env, "account_notice", "aml_monitoring_expiration", header, note)


def _document_expiration(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    threshold = (text(doc, "expirationThreshold") or "").upper()
    status = {
        "DOCUMENT_EXPIRES_WITHIN_30_DAYS": "expires_within_30_days",
        "DOCUMENT_EXPIRES_WITHIN_7_DAYS": "expires_within_7_days",
        "DOCUMENT_EXPIRES_WITHIN_1_DAY": "expires_within_1_day",
        "DOCUMENT_EXPIRED": "expired",
    }.get(threshold)
    return _small(
        env,
        header,
        "document_expiration",
        text(doc, "scanRef"),
        status,
        provider_status=threshold or None,
        final=status == "expired",
    )


def _video_call(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    scan_ref = text(doc, "scanRef")
    if scan_ref is None:
        return unrecognised(env, f"{header} without scanRef", header)
    return history(env, "kyc", scan_ref, header, "video call finished")


def _facial_authentication(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    raw = text(doc, "status")
    status = {
        "success": "success",
        "failed": "failed",
        "expired": "expired",
        "canceled": "canceled",
        "cancelled": "canceled",
        "pending": "pending",
    }.get(token(raw) or "")
    reasons = tuple(r for r in (text(doc, "failReason"),) if r) + strings(doc, "riskTags")
    subject_id = text(doc, "id") or text(doc, "token") or text(doc, "scanRef")
    return _small(
        env,
        header,
        "facial_authentication",
        subject_id,
        status,
        provider_status=raw,
        reasons=reasons,
        final=status != "pending",
    )


def _order_status(kind: str) -> Handler:
    """GOV_ORDERED_DOCUMENT and SOS_REPORT share GovDocumentOrderStatusEnum."""

    def handle(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
        raw = (text(doc, "status") or "").upper()
        status = raw.lower() if raw.lower() in lifecycle(kind).tiers else None
        return _small(
            env,
            header,
            kind,
            text(doc, "id"),
            status,
            provider_status=raw or None,
            final=status in {"finished", "failed", "timed_out"},
        )

    return handle


def _account_check(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    # `status` is an integer enum 1..5 whose meanings are undocumented: keep it verbatim.
    return _small(
        env,
        header,
        "account_check",
        text(doc, "scanRef"),
        "completed",
        provider_status=text(doc, "status"),
        final=True,
    )


def _bank_verification(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    risk = text(doc, "riskLevel")
    return _small(
        env,
        header,
        "bank_verification",
        text(doc, "id"),
        "completed",
        provider_status=risk,
        reasons=(f"risk:{risk}",) if risk else (),
        final=True,
    )


def _bank_card_verification(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    raw = (text(doc, "status") or "").upper()
    status = {"NOT_COMPARED": "not_compared", "MATCH": "match", "NO_MATCH": "no_match"}.get(raw)
    reasons = tuple(r for r in (text(doc, "noMatchReason"),) if r)
    return _small(
        env,
        header,
        "bank_card_verification",
        text(doc, "id"),
        status,
        provider_status=raw or None,
        reasons=reasons,
        final=True,
    )


def _age_estimation(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    raw = (text(doc, "status") or "").upper()
    status = {"COMPLETED": "completed", "FAILED": "failed"}.get(raw)
    outcome = text(doc, "outcome")
    return _small(
        env,
        header,
        "age_estimation",
        text(doc, "scanRef"),
        status,
        utc_ticks(doc.get("occurredAt")) or 0,
        provider_status=raw or None,
        reasons=(outcome,) if outcome else (),
        final=True,
    )


HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(KYC_EVENTS, _kyc),
    "DOCUMENT_EXPIRATION": _document_expiration,
    "VIDEO_CALL_FINISHED": _video_call,
    "FACIAL_AUTHENTICATION": _facial_authentication,
    "AML_MONITORING": _aml_monitoring,
    "AML_MONITORING_EXPIRATION": _aml_monitoring_expiration,
    "COMPANY_SUBMIT": _company_submit,
    "COMPANY_REVIEW": _company_review,
    "COMPANY_AML_REVIEW": _company_aml_review,
    "COMPANY_INFO_REQUEST": _company_info_request,
    "COMPANY_EXPIRATION": _company_expiration,
    "COMPANY_DELETE": _company_delete,
    "GOV_ORDERED_DOCUMENT": _order_status("gov_document"),
    "SOS_REPORT": _order_status("sos_report"),
    "ACCOUNT_CHECK": _account_check,
    "BANK_VERIFICATION": _bank_verification,
    "BANK_CARD_VERIFICATION_COMPLETED": _bank_card_verification,
    "AGE_ESTIMATION": _age_estimation,
}
EVENT_TYPES = tuple(HANDLERS)
