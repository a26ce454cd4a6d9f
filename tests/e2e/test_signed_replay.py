"""A signed iDenfy body cannot be replayed into another status (issue 10 §2), over real HTTP.

iDenfy signs the body only; `Idenfy-Event-Type` is not covered. Anyone holding a captured
delivery can send the same bytes with the same valid signature under another header. A
real `kycflow serve` must take that as the same delivery (202, duplicate) and let nothing
move: not the status, not who decided, not another kind of subject.
"""

from __future__ import annotations

from typing import Any

from tests import payloads as p
from tests.e2e.service import Service

CANCELLED = "IDENTIFICATION_CANCELLED"
MANUAL = "IDENTIFICATION_MANUAL_FINISHED"


def reheader(webhook: p.Webhook, header: str) -> p.Webhook:
    provider, headers, body = webhook
    return provider, {**headers, "Idenfy-Event-Type": header}, body


def accepted(answer: tuple[int, Any]) -> bool:
    """The 202's `duplicate` flag."""
    status, doc = answer
    assert status == 202, doc
    return bool(doc["duplicate"])


def verification(service: Service, scan_ref: str) -> dict[str, Any]:
    service.wait_projected()
    status, doc = service.get(f"/verifications/idenfy/kyc/{scan_ref}")
    assert status == 200, doc
    return dict(doc)


def decision(doc: dict[str, Any]) -> tuple[Any, ...]:
    return doc["status"], doc["final"], doc["decided_by"], doc["version"]


def test_a_preliminary_result_resent_as_cancelled_stays_in_review(service: Service) -> None:
    preliminary = p.idenfy_identification(
        scan_ref="scan-replay-1", final=False, overall="REVIEWING"
    )
    assert accepted(service.send(preliminary)) is False
    before = verification(service, "scan-replay-1")
    assert decision(before) == ("in_review", False, None, 1)
    assert accepted(service.send(reheader(preliminary, CANCELLED))) is True
    assert decision(verification(service, "scan-replay-1")) == decision(before)


def test_an_automatic_decision_resent_as_manual_stays_automatic(service: Service) -> None:
    automatic = p.idenfy_identification(scan_ref="scan-replay-2", final=True, overall="APPROVED")
    assert accepted(service.send(automatic)) is False
    before = verification(service, "scan-replay-2")
    assert decision(before) == ("approved", True, "auto", 1)
    assert accepted(service.send(reheader(automatic, MANUAL))) is True
    assert decision(verification(service, "scan-replay-2")) == decision(before)


def test_a_result_resent_as_another_kind_of_webhook_makes_no_subject(service: Service) -> None:
    result = p.idenfy_identification(scan_ref="scan-replay-3", final=True, overall="DENIED")
    assert accepted(service.send(result)) is False
    for header in ("ACCOUNT_CHECK", "DOCUMENT_EXPIRATION", "VIDEO_CALL_FINISHED"):
        assert accepted(service.send(reheader(result, header))) is True
    assert decision(verification(service, "scan-replay-3")) == ("rejected", True, "auto", 1)
    for kind in ("account_check", "document_expiration"):
        assert service.get(f"/verifications/idenfy/{kind}/scan-replay-3")[0] == 404


def test_a_body_first_seen_under_a_forged_header_is_read_as_the_body_says(
    service: Service,
) -> None:
    # Even a body that never arrived under its own header cannot claim what it does not say.
    preliminary = p.idenfy_identification(scan_ref="scan-replay-4", final=False, overall="DENIED")
    assert accepted(service.send(reheader(preliminary, CANCELLED))) is False
    assert decision(verification(service, "scan-replay-4")) == ("in_review", False, None, 1)
    automatic = p.idenfy_identification(scan_ref="scan-replay-5", final=True, overall="DENIED")
    assert accepted(service.send(reheader(automatic, MANUAL))) is False
    assert decision(verification(service, "scan-replay-5")) == ("rejected", True, "auto", 1)
