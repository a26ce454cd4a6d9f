"""iDenfy: the event type is only in the `Idenfy-Event-Type` header (providers.md §1.2).

The signature covers the body only, never that header, so the outcome follows what the
signed bytes say: the header may only choose among the readings the body supports
(expired vs canceled for a body that is no preliminary result; auto vs manual for a
decision whose body cannot tell), and the delivery is keyed by the body alone (`keys.idenfy_key`),
so the same signed body under another header is a duplicate.

KYC attempts are told apart by `startTime` (design.md §4c). Legacy result callbacks
(2018-2021, header `IDENTIFICATION` or none) carry no `final`: see `_final`. KYB: the
company is `id` in SUBMIT/REVIEW/EXPIRATION but `companyId` in INFO_REQUEST/DELETE/
AML_REVIEW (where `id` is the reviewed person's). iDenfy's other services (AML monitoring,
document expiry, facial authentication, …) are in `idenfy_services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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
    with_references,
)
from statemachines.keys import idenfy_key
from statemachines.machines import lifecycle
from statemachines.payload import dig, epoch_seconds, parse_object, strings, text, utc_ticks
from statemachines.providers import idenfy_services as services

JsonObject = dict[str, Any]
Handler = Callable[[RawEnvelope, str, JsonObject], Normalised]

DECISIONS = {"APPROVED": "approved", "DENIED": "rejected", "SUSPECTED": "suspected"}
EXPIRED_OVERALL = {"EXPIRED", "EXPIRED-DELETED"}  # the token expired unused
# The verification was archived or its data deleted: says nothing about its outcome.
RECORD_OVERALL = {"ARCHIVED": "verification archived", "DELETED": "verification data deleted"}
UNDECIDED_OVERALL = {"REVIEWING", "ACTIVE"}
ENDINGS = {"IDENTIFICATION_EXPIRED": "expired", "IDENTIFICATION_CANCELLED": "canceled"}
# What a header claims about who decided, when the body cannot tell (see `_decider`).
DECIDER = {
    "IDENTIFICATION_AUTO_FINISHED": "auto",
    "IDENTIFICATION_RESUBMITTED": "auto",
    "IDENTIFICATION_MANUAL_FINISHED": "manual",
}
KYC_EVENTS = (
    "IDENTIFICATION",
    "IDENTIFICATION_AUTO_FINISHED",
    "IDENTIFICATION_MANUAL_FINISHED",
    "IDENTIFICATION_EXPIRED",
    "IDENTIFICATION_CANCELLED",
    "IDENTIFICATION_RESUBMITTED",
)


def normalise(env: RawEnvelope) -> Normalised:
    # Keyed by the signed bytes whatever key the log holds (logs written before the key
    # left out the header): a body re-sent under another header folds as a duplicate.
    key = idenfy_key(env.body_sha256)
    if env.dedup_key != key:  # dataclasses.replace costs ~2 µs: only for logs that need it
        env = replace(env, dedup_key=key)
    doc = parse_object(env.body)
    header = (env.header("idenfy-event-type") or "").strip().upper()
    if isinstance(doc, str):
        return unrecognised(env, doc, header or None)
    return with_references(_read(env, header, doc), text(doc, "clientId"), text(doc, "externalRef"))


def _read(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    result = _is_result(doc)
    if not header:
        # Pre-header legacy callbacks: a result body is IDENTIFICATION, a video call's
        # (2020-08: `videoCallAnswers`, boolean `status`) VIDEO_CALL_FINISHED.
        if result:
            return _kyc(env, "IDENTIFICATION", doc)
        if text(doc, "scanRef") and "videoCallAnswers" in doc:
            return services.video_call(env, "VIDEO_CALL_FINISHED", doc)
        return unrecognised(env, "missing Idenfy-Event-Type header")
    handler = HANDLERS.get(header)
    if handler is not None and (header in KYC_EVENTS) != result:
        # The header is not signed: it cannot make a result of another body, nor another
        # kind of webhook (an account check, a company, …) of a signed result.
        return unrecognised(env, f"{header} is not the kind of webhook this body is", header)
    if handler is not None:
        return handler(env, header, doc)
    scan_ref = text(doc, "scanRef")
    if scan_ref:
        return history(env, "kyc", scan_ref, header, "unknown iDenfy event type", recognised=False)
    return unrecognised(env, f"unknown iDenfy event type {header!r} without scanRef", header)


# --- KYC -----------------------------------------------------------------------------
def _is_result(doc: JsonObject) -> bool:
    """An identification result (IdentificationWebhook): scanRef and a `status` object."""
    return bool(text(doc, "scanRef")) and isinstance(doc.get("status"), dict)


def _kyc(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    scan_ref = text(doc, "scanRef")
    if scan_ref is None:
        return unrecognised(env, f"{header} without scanRef", header)
    status = doc.get("status")
    overall = (text(status, "overall") or "").upper()
    reasons = (
        strings(status, "fraudTags")
        + strings(status, "mismatchTags")
        + strings(status, "suspicionReasons")  # legacy name of fraudTags
    )
    time = epoch_seconds(doc, "finishTime") or 0
    attempt = epoch_seconds(doc, "startTime") or 0

    def emit(status: str, klass: int, decided_by: str | None, is_final: bool) -> Normalised:
        return event(
            env,
            "kyc",
            scan_ref,
            header,
            status,
            Order(klass=klass, time=time, attempt=attempt),
            final=is_final,
            decided_by=decided_by,
            provider_status=overall or None,
            reasons=reasons,
        )

    final = _final(doc)
    ending = ENDINGS.get(header)
    if ending is not None and not _awaits_review(doc, overall):
        return emit(ending, TERMINAL, None, True)
    if overall in EXPIRED_OVERALL:
        return emit("expired", TERMINAL, None, True)
    if overall in RECORD_OVERALL:
        note = RECORD_OVERALL[overall]
        return history(env, "kyc", scan_ref, header, note, provider_status=overall)
    if not final or overall in UNDECIDED_OVERALL:
        return emit("in_review", PRELIMINARY, None, False)
    if overall not in DECISIONS:
        return unrecognised(env, f"{header} with final result but overall {overall!r}", header)
    decided_by = _decider(doc, header)
    klass = MANUAL_DECISION if decided_by == "manual" else AUTO_DECISION
    return emit(DECISIONS[overall], klass, decided_by, True)


def _awaits_review(doc: JsonObject, overall: str) -> bool:
    """A preliminary result (`final: false` on a result) says a manual one follows: it is
    no expiry or cancellation, whatever the unsigned header claims. iDenfy documents no
    `final` value for IDENTIFICATION_EXPIRED/CANCELLED, so their own bodies pass."""
    return doc.get("final") is False and (overall in DECISIONS or overall == "REVIEWING")


def _final(doc: JsonObject) -> bool:
    """`final` as sent; bodies without it (2018-2021) by what the docs of their era say.

    Until 2020-08 iDenfy sent two consecutive callbacks, the automatic one with every
    `manual*` field null and then the manual one; from 2020-08 one callback whose `overall`
    is final, with the final analysis in `manualDocument`/`manualFace`. So a body whose
    final analysis is filled is final in either era; one without it is the automatic
    callback a manual one follows.
    """
    final = doc.get("final")
    if isinstance(final, bool):
        return final
    return any(_analysis(doc, "manual"))


ANALYSES = {"manual": ("manualDocument", "manualFace"), "auto": ("autoDocument", "autoFace")}


def _analysis(doc: JsonObject, who: str) -> tuple[str | None, str | None]:
    """(document, face) analysis results; NOT_CHECKED counts as none."""
    status = doc.get("status")
    document, face = ANALYSES[who]
    return _checked(text(status, document)), _checked(text(status, face))


def _checked(result: str | None) -> str | None:
    return None if result is None or result.endswith("NOT_CHECKED") else result


def _decider(doc: JsonObject, header: str) -> str | None:
    """Who decided, from the body; the header only where the body cannot tell.

    iDenfy documents `manualDocument`/`manualFace` as the final analysis "made by an
    automatic system and human", so a filled one alone proves nothing. A human decided
    when `data.manuallyDataChanged` is true ("applicable only when a human reviews") or
    the final analysis differs from the automatic one; nobody but the automatic system
    when the final analysis is empty. Otherwise the header's claim is one the body
    supports; the legacy IDENTIFICATION header makes none (decided_by stays null).
    """
    manual, auto = _analysis(doc, "manual"), _analysis(doc, "auto")
    if dig(doc, "data", "manuallyDataChanged") is True:
        return "manual"
    if manual == (None, None):
        return "auto"
    if any(m is not None and m != a for m, a in zip(manual, auto, strict=True)):
        return "manual"
    return DECIDER.get(header)


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
