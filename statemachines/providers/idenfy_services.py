"""iDenfy's services beside KYC and KYB: AML monitoring, document expiration, facial
authentication, government documents, SOS reports, account, bank and bank-card checks, age
estimation, video calls. Each has a small lifecycle of its own (see `machines.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statemachines.envelope import RawEnvelope
from statemachines.events import Normalised, Order, event, history, unrecognised
from statemachines.machines import lifecycle
from statemachines.payload import integer, strings, text, token, utc_ticks

JsonObject = dict[str, Any]
Handler = Callable[[RawEnvelope, str, JsonObject], Normalised]


def small(
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


V3_STATUSES = {"ACTIVE": "active", "STOPPED": "stopped", "PENDING": "pending", "ALERT": "alert"}
# iDenfy's AML migration guide: v2 alertStatus ACCEPTED/ALERT/DECLINED/PENDING is v3 status
# ACTIVE/ALERT/STOPPED/PENDING.
V2_STATUSES = {"ACCEPTED": "active", "ALERT": "alert", "DECLINED": "stopped", "PENDING": "pending"}


def aml_monitoring(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    current = (text(doc, "status") or "").upper()  # v3
    legacy = (text(doc, "alertStatus") or "").upper()  # v2; both are sent
    status = V3_STATUSES.get(current) or V2_STATUSES.get(legacy)
    reasons = tuple(
        f"{name}:{value}"
        for name in ("pepsStatus", "sanctionsStatus", "adverseMediaStatus")
        if (value := text(doc, name))
    )
    return small(
        env,
        header,
        "aml_monitoring",
        text(doc, "monitoringId"),
        status,
        provider_status=current or legacy or None,
        reasons=reasons,
    )


def aml_monitoring_expiration(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    if integer(doc, "usersToExtend") is None and integer(doc, "usersToExpire") is None:
        # The header is not signed: only a body of this shape is this notice.
        return unrecognised(env, f"{header} without usersToExtend/usersToExpire", header)
    note = (
        f"{integer(doc, 'usersToExtend') or 0} monitored users to extend, "
        f"{integer(doc, 'usersToExpire') or 0} to expire"
    )
    return history(env, "account_notice", "aml_monitoring_expiration", header, note)


def document_expiration(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    threshold = (text(doc, "expirationThreshold") or "").upper()
    status = {
        "DOCUMENT_EXPIRES_WITHIN_30_DAYS": "expires_within_30_days",
        "DOCUMENT_EXPIRES_WITHIN_7_DAYS": "expires_within_7_days",
        "DOCUMENT_EXPIRES_WITHIN_1_DAY": "expires_within_1_day",
        "DOCUMENT_EXPIRED": "expired",
    }.get(threshold)
    return small(
        env,
        header,
        "document_expiration",
        text(doc, "scanRef"),
        status,
        provider_status=threshold or None,
        final=status == "expired",
    )


def video_call(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    scan_ref = text(doc, "scanRef")
    if scan_ref is None:
        return unrecognised(env, f"{header} without scanRef", header)
    return history(env, "kyc", scan_ref, header, "video call finished")


def facial_authentication(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
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
    return small(
        env,
        header,
        "facial_authentication",
        subject_id,
        status,
        provider_status=raw,
        reasons=reasons,
        final=status != "pending",
    )


def order_status(kind: str) -> Handler:
    """GOV_ORDERED_DOCUMENT and SOS_REPORT share GovDocumentOrderStatusEnum."""

    def handle(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
        raw = (text(doc, "status") or "").upper()
        status = raw.lower() if raw.lower() in lifecycle(kind).tiers else None
        return small(
            env,
            header,
            kind,
            text(doc, "id"),
            status,
            provider_status=raw or None,
            final=status in {"finished", "failed", "timed_out"},
        )

    return handle


def account_check(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    # `status` is an integer enum 1..5 whose meanings are undocumented: keep it verbatim.
    # It is also what tells this body from others (the header is not signed).
    if integer(doc, "status") is None:
        return unrecognised(env, f"{header} without its integer status", header)
    return small(
        env,
        header,
        "account_check",
        text(doc, "scanRef"),
        "completed",
        provider_status=text(doc, "status"),
        final=True,
    )


def bank_verification(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    risk = text(doc, "riskLevel")
    return small(
        env,
        header,
        "bank_verification",
        text(doc, "id"),
        "completed",
        provider_status=risk,
        reasons=(f"risk:{risk}",) if risk else (),
        final=True,
    )


def bank_card_verification(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    raw = (text(doc, "status") or "").upper()
    status = {"NOT_COMPARED": "not_compared", "MATCH": "match", "NO_MATCH": "no_match"}.get(raw)
    reasons = tuple(r for r in (text(doc, "noMatchReason"),) if r)
    return small(
        env,
        header,
        "bank_card_verification",
        text(doc, "id"),
        status,
        provider_status=raw or None,
        reasons=reasons,
        final=True,
    )


def age_estimation(env: RawEnvelope, header: str, doc: JsonObject) -> Normalised:
    raw = (text(doc, "status") or "").upper()
    status = {"COMPLETED": "completed", "FAILED": "failed"}.get(raw)
    outcome = text(doc, "outcome")
    return small(
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
