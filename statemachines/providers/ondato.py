"""Ondato: envelope `{id, applicationId, createdUtc, payload, type}` (providers.md §2).

Keys are read case-insensitively and so is `type`: Ondato's early-2023 examples spell the
envelope `Id, ApplicationId, CreatedUtc, DeliveredUtc, IsDelivered, Payload, Type`, later
ones camelCase; `deliveredUtc`/`isDelivered` describe one delivery attempt and are not
read. KYC events map by `type`, not `payload.status`; `createdUtc` of the envelope
orders events ("you might receive them out of order"); a `statusReason` beginning
`Manually` means a manual decision (design.md §4c). `Form.*` webhooks (a questionnaire step
of an identity verification) land in its history. Unknown `Resource.Event` types that
name an identity verification land in its history, flagged unknown. The integrator's
reference is `payload.externalReferenceId` where the resource carries it (the identity
verification does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statemachines.envelope import RawEnvelope
from statemachines.events import (
    AUTO_DECISION,
    MANUAL_DECISION,
    PROGRESS,
    TERMINAL,
    Normalised,
    Order,
    Subject,
    event,
    history,
    unrecognised,
    with_references,
)
from statemachines.machines import lifecycle
from statemachines.payload import get_ci, parse_object, text, token, utc_ticks

JsonObject = dict[str, Any]
Handler = Callable[[RawEnvelope, str, JsonObject, int], Normalised]

IDV_STATUSES = {  # IdentityVerification.StatusChanged payload.status -> (status, class)
    "pending": ("pending", PROGRESS),
    "inprogress": ("in_progress", PROGRESS),
    "completed": ("submitted", PROGRESS),
    "aborted": ("canceled", TERMINAL),
    "expired": ("expired", TERMINAL),
}
DOCUMENT_STATUSES = {
    "needreview": "need_review",
    "validated": "validated",
    "invalidated": "invalidated",
}


def normalise(env: RawEnvelope) -> Normalised:
    doc = parse_object(env.body)
    if isinstance(doc, str):
        return unrecognised(env, doc)
    event_type = text(doc, "type", ci=True)
    payload = get_ci(doc, "payload")
    if event_type is None:
        return unrecognised(env, "Ondato webhook without `type`")
    if not isinstance(payload, dict):
        return unrecognised(env, f"{event_type} without a payload object", event_type)
    time = utc_ticks(get_ci(doc, "createdUtc")) or 0
    reference = text(payload, "externalReferenceId", ci=True)
    return with_references(_read(env, event_type, payload, time), reference)


def _read(env: RawEnvelope, event_type: str, payload: JsonObject, time: int) -> Normalised:
    handler = HANDLERS.get(event_type.lower())
    if handler is not None:
        return handler(env, event_type, payload, time)
    idv = text(payload, "identityVerificationId", ci=True)
    if idv:
        return history(env, "kyc", idv, event_type, "unknown Ondato event type", recognised=False)
    return unrecognised(env, f"unknown Ondato event type {event_type!r}", event_type)


def _idv_consented(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
    idv = text(payload, "id", ci=True)
    if idv is None:
        return unrecognised(env, f"{kind} without payload.id", kind)
    return history(env, "kyc", idv, kind, "consent accepted")


def _idv_status_changed(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
    idv = text(payload, "id", ci=True)
    raw = text(payload, "status", ci=True)
    if idv is None:
        return unrecognised(env, f"{kind} without payload.id", kind)
    mapped = IDV_STATUSES.get(token(raw) or "")
    if mapped is None and token(raw) == "suspended":  # "continue later": no status change
        return history(
            env, "kyc", idv, kind, "identity verification suspended", provider_status=raw
        )
    if mapped is None:
        return unrecognised(env, f"{kind} with unknown status {raw!r}", kind)
    status, klass = mapped
    return event(
        env,
        "kyc",
        idv,
        kind,
        status,
        Order(klass=klass, time=time),
        final=klass == TERMINAL,
        provider_status=raw,
        reasons=_reasons(payload),
    )


def _kyc(status: str | None, klass: int) -> Handler:
    def handle(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
        idv = text(payload, "identityVerificationId", ci=True)
        if idv is None:
            return unrecognised(env, f"{kind} without payload.identityVerificationId", kind)
        raw = text(payload, "status", ci=True)
        if status is None:
            return history(
                env, "kyc", idv, kind, "identification data updated", provider_status=raw
            )
        decided = klass >= AUTO_DECISION
        reason = text(payload, "statusReason", ci=True)  # read once: a missing key scans
        manual = decided and (reason or "").startswith("Manually")
        return event(
            env,
            "kyc",
            idv,
            kind,
            status,
            Order(klass=MANUAL_DECISION if manual else klass, time=time),
            final=decided,
            decided_by=("manual" if manual else "auto") if decided else None,
            provider_status=raw,
            reasons=(reason,) if reason else (),
        )

    return handle


def _form(note: str) -> Handler:
    """Form.Created/Updated/Completed: a form step of the identity verification it names."""

    def handle(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
        idv = text(payload, "identityVerificationId", ci=True)
        if idv is None:
            return unrecognised(env, f"{kind} without payload.identityVerificationId", kind)
        raw = text(payload, "status", ci=True)
        return history(env, "kyc", idv, kind, note, provider_status=raw)

    return handle


def _kyb(status: str) -> Handler:
    klass = lifecycle("kyb").tiers[status]

    def handle(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
        kyb = text(payload, "id", ci=True) or text(payload, "kybIdentificationId", ci=True)
        if kyb is None:
            return unrecognised(env, f"{kind} without payload.id", kind)
        order = Order(klass=klass, time=time)
        return event(
            env,
            "kyb",
            kyb,
            kind,
            status,
            order,
            final=status != "submitted",
            provider_status=text(payload, "status", ci=True),
            reasons=_reasons(payload),
        )

    return handle


def _document(status: str | None) -> Handler:
    """KYB document events; `Document.Updated` (status None here) maps by payload.status."""

    def handle(env: RawEnvelope, kind: str, payload: JsonObject, time: int) -> Normalised:
        document = text(payload, "id", ci=True)
        kyb = text(payload, "kybIdentificationId", ci=True)
        raw = text(payload, "status", ci=True)
        if document is None:
            return unrecognised(env, f"{kind} without payload.id", kind)
        mapped = status or DOCUMENT_STATUSES.get(token(raw) or "")
        if mapped is None:
            return unrecognised(env, f"{kind} with unknown document status {raw!r}", kind)
        order = Order(klass=lifecycle("kyb_document").tiers[mapped], time=time)
        parent = None if kyb is None else Subject("ondato", "kyb", kyb)
        return event(
            env,
            "kyb_document",
            document,
            kind,
            mapped,
            order,
            final=mapped in {"validated", "invalidated", "deleted"},
            provider_status=raw,
            parent=parent,
        )

    return handle


def _reasons(payload: JsonObject) -> tuple[str, ...]:
    reason = text(payload, "statusReason", ci=True)
    return (reason,) if reason else ()


HANDLERS: dict[str, Handler] = {
    "identityverification.consented": _idv_consented,
    "identityverification.statuschanged": _idv_status_changed,
    "kycidentification.created": _kyc("in_progress", PROGRESS),
    "kycidentification.processed": _kyc("submitted", PROGRESS),
    "kycidentification.approved": _kyc("approved", AUTO_DECISION),
    "kycidentification.rejected": _kyc("rejected", AUTO_DECISION),
    "kycidentification.updated": _kyc(None, PROGRESS),
    "kybidentification.created": _kyb("submitted"),
    "kybidentification.approved": _kyb("approved"),
    "kybidentification.rejected": _kyb("rejected"),
    "kybidentification.document.created": _document("need_review"),
    "kybidentification.document.uploaded": _document("uploaded"),
    "kybidentification.document.updated": _document(None),
    "kybidentification.document.deleted": _document("deleted"),
    "form.created": _form("form created"),
    "form.updated": _form("form updated"),
    "form.completed": _form("form completed"),
}
EVENT_TYPES = (
    "IdentityVerification.Consented",
    "IdentityVerification.StatusChanged",
    "KycIdentification.Created",
    "KycIdentification.Processed",
    "KycIdentification.Approved",
    "KycIdentification.Rejected",
    "KycIdentification.Updated",
    "KybIdentification.Created",
    "KybIdentification.Approved",
    "KybIdentification.Rejected",
    "KybIdentification.Document.Created",
    "KybIdentification.Document.Uploaded",
    "KybIdentification.Document.Updated",
    "KybIdentification.Document.Deleted",
    "Form.Created",
    "Form.Updated",
    "Form.Completed",
)
