"""Realistic provider webhooks, built from the field tables in shared/providers.md.

Each builder returns `(provider, headers, body_bytes)`; `deliver` wraps it into a raw
envelope at a log offset, as ingest would store it. Used by unit tests, property tests,
benchmarks and `kycflow simulate` (which is why it ships in the package), so every test
and every simulated delivery speaks the providers' real wire shapes. iDenfy builders carry
a placeholder `Idenfy-Signature`; the simulator replaces it with the real HMAC.

The lifecycle builders at the end give one verification's webhooks in the order the
provider sends them, drawing ids and times from a seeded `random.Random`, so a seed
reproduces the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from statemachines.envelope import RawEnvelope

Webhook = tuple[str, dict[str, str], bytes]
RECEIVED_AT = "2026-11-22T10:00:00.000000Z"


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def deliver(webhook: Webhook, offset: int = 0, received_at: str = RECEIVED_AT) -> RawEnvelope:
    provider, headers, body = webhook
    return RawEnvelope.receive(
        provider, body, headers, received_at, auth_method="test", remote_addr="127.0.0.1"
    ).at(offset)


# --- iDenfy ------------------------------------------------------------------------------
def idenfy(event_type: str, doc: dict[str, Any]) -> Webhook:
    headers = {
        "Content-Type": "application/json",
        "Idenfy-Event-Type": event_type,
        "Idenfy-Signature": "0" * 64,
    }
    return ("idenfy", headers, _json(doc))


def idenfy_identification(
    event_type: str = "IDENTIFICATION_AUTO_FINISHED",
    scan_ref: str = "3af0b5c2-6ac8-11ee-b962-0242ac120002",
    *,
    final: bool | None = True,
    overall: str = "APPROVED",
    start: int | float = 1_700_000_000,
    finish: int | float = 1_700_000_060,
    fraud_tags: tuple[str, ...] = (),
    mismatch_tags: tuple[str, ...] = (),
    manual: bool | None = None,
    client_id: str = "client-42",
    external_ref: str | None = None,
) -> Webhook:
    """IdentificationWebhook: the KYC result body (no event-name field; see the header).

    `final=None` leaves the key out, as legacy callbacks (2018-2021) did. `manual` fills the
    final analysis (`manualDocument`/`manualFace`); by default a manual result has one.
    """
    analysed = event_type.upper() == "IDENTIFICATION_MANUAL_FINISHED" if manual is None else manual
    doc: dict[str, Any] = {
        "final": final,
        "platform": "PC",
        "status": {
            "overall": overall,
            "fraudTags": list(fraud_tags),
            "mismatchTags": list(mismatch_tags),
            "autoFace": "FACE_MATCH",
            "manualFace": "FACE_MATCH" if analysed else None,
            "autoDocument": "DOC_VALIDATED",
            "manualDocument": "DOC_VALIDATED" if analysed else None,
            "additionalSteps": None,
        },
        "data": {
            "docFirstName": "JOHN",
            "docLastName": "DOE",
            "docNumber": "AB123456",
            "docDob": "1990-01-01",
            "docType": "ID_CARD",
            "docSex": "MALE",
            "docNationality": "LT",
            "docIssuingCountry": "LT",
            "manuallyDataChanged": False,
        },
        "fileUrls": {"FRONT": "https://s3.eu-west-1.amazonaws.com/x/front.png?Expires=1"},
        "AML": [],
        "LID": [],
        "scanRef": scan_ref,
        "externalRef": external_ref,
        "clientId": client_id,
        "companyId": None,
        "beneficiaryId": None,
        "startTime": start,
        "finishTime": finish,
        "clientIp": "192.0.2.10",
        "clientIpCountry": "LT",
        "clientLocation": "Vilnius",
    }
    if final is None:
        del doc["final"]
    return idenfy(event_type, doc)


def idenfy_company(event_type: str, **fields: Any) -> Webhook:
    return idenfy(event_type, fields)


# --- Ondato ------------------------------------------------------------------------------
def ondato(
    event_type: str,
    payload: dict[str, Any],
    *,
    webhook_id: str,
    created: str = "2026-11-22T10:00:00.1234567Z",
    pascal: bool = False,
    delivered: str | None = None,
) -> Webhook:
    """The webhook envelope; `pascal` spells its keys as Ondato's early-2023 examples did,
    `delivered` adds the delivery fields its later documentation shows."""
    envelope: dict[str, Any] = {
        "id": webhook_id,
        "applicationId": "app-1",
        "createdUtc": created,
        "payload": payload,
        "type": event_type,
    }
    if delivered is not None:
        envelope |= {"deliveredUtc": delivered, "isDelivered": True}
    if pascal:
        envelope = {key[0].upper() + key[1:]: value for key, value in envelope.items()}
    return ("ondato", {"Content-Type": "application/json"}, _json(envelope))


def ondato_idv(
    status: str, idv: str = "idv-1", *, external_ref: str | None = None, **kw: Any
) -> Webhook:
    """IdentityVerification.StatusChanged; the payload is the IDV resource, which carries
    the integrator's `externalReferenceId` when one was given."""
    payload = {
        "id": idv,
        "applicationId": "app-1",
        "status": status,
        "createdUtc": "2026-11-22T09:59:00.77Z",
    }
    if external_ref is not None:
        payload["externalReferenceId"] = external_ref
    return ondato("IdentityVerification.StatusChanged", payload, **kw)


def ondato_kyc(
    event: str,
    idv: str = "idv-1",
    *,
    status: str | None = None,
    reason: str | None = None,
    kyc_id: str = "kyc-1",
    **kw: Any,
) -> Webhook:
    payload: dict[str, Any] = {
        "id": kyc_id,
        "applicationId": "app-1",
        "identityVerificationId": idv,
        "createdUtc": "2026-11-22T09:59:10.5Z",
        "setup": {"id": "setup-1", "versionId": "v-1"},
        "status": status or event,
        "isCrossChecked": False,
        "document": {
            "fullName": "JOHN DOE",
            "documentNumber": "AB123456",
            "type": "DriverLicense",
            "countryIso3": "LTU",
        },
        "rules": [{"name": "DocumentValidity", "status": "Success"}],
    }
    if reason:
        payload["statusReason"] = reason
    return ondato(f"KycIdentification.{event}", payload, **kw)


def ondato_kyb(event: str, kyb: str = "kyb-1", **kw: Any) -> Webhook:
    payload = {
        "id": kyb,
        "applicationId": "app-1",
        "status": event,
        "createdUtc": "2026-11-22T09:00:00Z",
    }
    return ondato(f"KybIdentification.{event}", payload, **kw)


def ondato_document(
    event: str,
    document: str = "doc-1",
    kyb: str = "kyb-1",
    *,
    status: str = "NeedReview",
    **kw: Any,
) -> Webhook:
    payload = {
        "id": document,
        "kybIdentificationId": kyb,
        "status": status,
        "fileName": "register-extract.pdf",
    }
    return ondato(f"KybIdentification.Document.{event}", payload, **kw)


# --- IDWise ------------------------------------------------------------------------------
def idwise(event: str, *, event_id: str, journey: str = "journey-1", **body: Any) -> Webhook:
    doc = {
        "event": event,
        "body": {"eventId": event_id, "journeyId": journey, "referenceNo": "customer-42", **body},
    }
    return ("idwise", {"Content-Type": "application/json"}, _json(doc))
