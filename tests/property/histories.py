"""Hypothesis strategies: realistic per-subject webhook histories for each provider/kind.

A history is a list of *blocks*; each block is a list of distinct webhooks. Within a
block the providers' own data (times, attempts, lifecycle) orders every status-bearing
event, so any arrival order must converge. Blocks must arrive in order only where the
provider gives no ordering data at all (IDWise attempts, opened by Verification Update
Required) — the documented last-resort use of arrival order.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests import payloads as p
from tests.payloads import Webhook

History = list[list[Webhook]]
DECISION = st.sampled_from(["APPROVED", "DENIED", "SUSPECTED"])
CLIENTS = st.sampled_from(["client-1", "client-2", "order-9"])  # integrator references


def _utc(seconds: int, digits: int = 7) -> str:
    minutes, second = divmod(seconds, 60)
    base = f"2026-11-22T10:{minutes:02d}:{second:02d}"
    return base + ("." + "1234567"[:digits] if digits else "") + "Z"


@st.composite
def idenfy_kyc(draw: st.DrawFn) -> History:
    scan = "scan-" + draw(st.sampled_from("abc"))
    events: list[Webhook] = []
    for number in range(draw(st.integers(1, 3))):
        start = 1_700_000_000 + number * 1000
        opener = "IDENTIFICATION_AUTO_FINISHED" if number == 0 else "IDENTIFICATION_RESUBMITTED"
        final = draw(st.booleans())
        overall = (
            draw(DECISION) if final else draw(st.sampled_from(["REVIEWING", "SUSPECTED", "DENIED"]))
        )
        refs = {"client_id": draw(CLIENTS), "external_ref": draw(st.none() | CLIENTS)}
        if draw(st.booleans()) or number > 0:
            events.append(
                p.idenfy_identification(
                    opener,
                    scan,
                    final=final,
                    overall=overall,
                    start=start,
                    finish=start + 60,
                    **refs,
                )
            )
        if not final and draw(st.booleans()):
            events.append(
                p.idenfy_identification(
                    "IDENTIFICATION_MANUAL_FINISHED",
                    scan,
                    overall=draw(DECISION),
                    start=start,
                    finish=start + 60,
                    manual=True,
                )
            )
        if draw(st.integers(0, 3)) == 0:
            ending = draw(st.sampled_from(["IDENTIFICATION_EXPIRED", "IDENTIFICATION_CANCELLED"]))
            events.append(
                p.idenfy_identification(
                    ending, scan, final=True, overall="EXPIRED", start=start, finish=start + 90
                )
            )
        if draw(st.booleans()):
            events.append(p.idenfy("VIDEO_CALL_FINISHED", {"scanRef": scan, "n": number}))
    return [events]


@st.composite
def idenfy_legacy_kyc(draw: st.DrawFn) -> History:
    """Result callbacks without `final` (2018-2021), header IDENTIFICATION or none: per
    attempt the automatic callback (manual* null) and/or the final one; float start times
    (2019-04) as often as integers; archive/deletion records; an expired unused token."""
    scan = "scan-legacy"
    events: list[Webhook] = []
    for number in range(draw(st.integers(1, 3))):
        start: float = 1_554_726_960 + number * 1000 + draw(st.sampled_from([0, 0.324056]))
        times = {"start": start, "finish": start + 42.25, "client_id": draw(CLIENTS)}
        if draw(st.booleans()):
            events.append(_legacy(draw, scan, manual=False, overall=draw(DECISION), **times))
        if draw(st.booleans()):
            final = p.idenfy_identification(
                "IDENTIFICATION", scan, final=None, overall=draw(DECISION), manual=True, **times
            )
            if draw(st.booleans()):  # a reviewer changed the data: a proven manual decision
                final = _changed(final)
            events.append(_headerless(final) if draw(st.booleans()) else final)
        if draw(st.integers(0, 3)) == 0:
            record = draw(st.sampled_from(["ARCHIVED", "DELETED", "EXPIRED"]))
            events.append(_legacy(draw, scan, manual=False, overall=record, **times))
    return [events] if events else [[_legacy(draw, scan, manual=False, overall="EXPIRED")]]


def _legacy(draw: st.DrawFn, scan: str, **fields: Any) -> Webhook:
    webhook = p.idenfy_identification("IDENTIFICATION", scan, final=None, **fields)
    return _headerless(webhook) if draw(st.booleans()) else webhook


def _headerless(webhook: Webhook) -> Webhook:
    provider, headers, body = webhook
    return provider, {k: v for k, v in headers.items() if k != "Idenfy-Event-Type"}, body


def _changed(webhook: Webhook) -> Webhook:
    provider, headers, body = webhook
    doc = json.loads(body)
    doc["data"]["manuallyDataChanged"] = True
    return provider, headers, json.dumps(doc).encode()


@st.composite
def idenfy_kyb(draw: st.DrawFn) -> History:
    company = "company-1"
    events: list[Webhook] = []
    submissions = draw(st.integers(1, 3))
    for n in range(submissions):
        events.append(
            p.idenfy_company(
                "COMPANY_SUBMIT", id=company, clientId="c", submissionTime=_utc(n * 20, 3)
            )
        )
        if n < submissions - 1 or draw(st.booleans()):
            events.append(
                p.idenfy_company(
                    "COMPANY_INFO_REQUEST",
                    companyId=company,
                    token="t",
                    email="ops@example.com",
                    manager=None,
                    status="REQUESTED",
                    date=_utc(n * 20 + 10, 0),
                )
            )
    if draw(st.booleans()):
        events.append(
            p.idenfy_company(
                "COMPANY_REVIEW",
                id=company,
                companyName="ACME",
                clientId="c",
                approvalStatus=draw(st.sampled_from(["APPROVED", "DENIED"])),
                statusChangedBy={"id": 7, "email": "reviewer@example.com"},
            )
        )
    if draw(st.booleans()):
        events.append(
            p.idenfy_company(
                "COMPANY_AML_REVIEW",
                id="beneficiary-9",
                companyId=company,
                amlReviewSubjectType="BENEFICIARY",
                overallStatus="NO_FLAGS",
            )
        )
    if draw(st.integers(0, 3)) == 0:
        events.append(
            p.idenfy_company("COMPANY_EXPIRATION", id=company, expirationStatus="EXPIRED")
        )
    if draw(st.integers(0, 3)) == 0:
        events.append(
            p.idenfy_company("COMPANY_DELETE", companyId=company, manager=None, date=_utc(59, 0))
        )
    return [events]


@st.composite
def ondato_kyc(draw: st.DrawFn) -> History:
    steps: list[tuple[str, Any]] = [
        ("idv", "Pending"),
        ("kyc", "Created"),
        ("idv", "InProgress"),
        ("kyc", "Processed"),
        ("idv", "Completed"),
        ("kyc", "Approved"),
        ("kyc", "Rejected"),
        ("kyc", "Updated"),
        ("idv", "Expired"),
        ("idv", "Aborted"),
        ("form", "Form.Created"),
        ("form", "Form.Completed"),
    ]
    chosen = draw(st.lists(st.sampled_from(range(len(steps))), min_size=1, unique=True))
    events: list[Webhook] = []
    for n, index in enumerate(sorted(chosen)):
        source, name = steps[index]
        created = _utc(index * 5 + n % 2, draw(st.sampled_from([0, 3, 7])))
        envelope = {
            "webhook_id": f"w{index}",
            "created": created,
            "pascal": draw(st.booleans()),
            "delivered": draw(st.none() | st.just("2026-11-22T11:00:00.5Z")),
        }
        if source == "idv":
            reference = draw(st.none() | st.sampled_from(["ext-1", "ext-2"]))
            events.append(p.ondato_idv(name, external_ref=reference, **envelope))
        elif source == "form":
            form = {"id": "form-1", "identityVerificationId": "idv-1", "status": "Unfinished"}
            events.append(p.ondato(name, form, **envelope))
        else:
            reason = draw(
                st.sampled_from(
                    ["AutomaticallyIdentified", "ManuallyIdentified", "ManuallyRejected", None]
                )
            )
            events.append(p.ondato_kyc(name, reason=reason, **envelope))
    return [events]


@st.composite
def ondato_kyb(draw: st.DrawFn) -> History:
    names = draw(
        st.lists(st.sampled_from(["Created", "Approved", "Rejected"]), min_size=1, max_size=4)
    )
    return [
        [
            p.ondato_kyb(name, webhook_id=f"k{n}", created=_utc(n * 7))
            for n, name in enumerate(names)
        ]
    ]


@st.composite
def ondato_documents(draw: st.DrawFn) -> History:
    flow = draw(
        st.lists(
            st.sampled_from(
                [
                    ("Created", "NeedReview"),
                    ("Uploaded", "NeedReview"),
                    ("Updated", "Validated"),
                    ("Updated", "Invalidated"),
                    ("Deleted", "Invalidated"),
                ]
            ),
            min_size=1,
            max_size=6,
        )
    )
    return [
        [
            p.ondato_document(event, status=status, webhook_id=f"d{n}", created=_utc(n * 3))
            for n, (event, status) in enumerate(flow)
        ]
    ]


@st.composite
def idwise_kyc(draw: st.DrawFn) -> History:
    blocks: History = []
    ids = iter(range(1000))
    for number in range(draw(st.integers(1, 3))):
        block: list[Webhook] = []
        if number > 0:  # opens the attempt by arriving first: a block of its own
            blocks.append(
                [
                    p.idwise(
                        "Verification Update Required",
                        event_id=f"e{next(ids)}",
                        trigger="Manual Review",
                        requiredSteps=[{"stepId": "20", "reasonCode": "blurry"}],
                    )
                ]
            )
        for step in range(draw(st.integers(0, 2))):
            block.append(p.idwise("Finished Step", event_id=f"e{next(ids)}", stepId=str(step)))
        if draw(st.booleans()):
            block.append(
                p.idwise("Finished User Steps", event_id=f"e{next(ids)}", systemDecision="Refer")
            )
        if draw(st.booleans()):
            block.append(
                p.idwise(
                    "Finished Journey",
                    event_id=f"e{next(ids)}",
                    systemDecision=draw(st.sampled_from(["Complete", "Refer", "Incomplete"])),
                    manualDecision=None,
                )
            )
        reviewer = draw(st.sampled_from([None, "Manually Reviewed", "Updated Journey"]))
        if reviewer:
            verdict = draw(st.sampled_from(["Approved", "Rejected"]))
            block.append(
                p.idwise(
                    reviewer,
                    event_id=f"e{next(ids)}",
                    systemDecision="Refer",
                    manualDecision=verdict,
                    finalDecision=verdict,
                    action="Manual Review",
                )
            )
        blocks.append(block)
    return [b for b in blocks if b]


@st.composite
def idwise_legacy_kyc(draw: st.DrawFn) -> History:
    """2022-12 .. 2023-05 bodies: no eventId (keyed by content), four event types."""
    decisions = {"Complete": "Complete", "Refer": "Refer", "Incomplete": "Incomplete"}
    events: list[Webhook] = []
    if draw(st.booleans()):
        events.append(_idwise_legacy("Finished User Steps", systemDecision="Refer"))
    system = draw(st.sampled_from(sorted(decisions)))
    if draw(st.booleans()):
        events.append(_idwise_legacy("Finished Journey", systemDecision=system))
    if draw(st.booleans()) or not events:
        verdict = draw(st.sampled_from(["Approved", "Rejected"]))
        events.append(
            _idwise_legacy(
                "Manually Reviewed",
                systemDecision=system,
                manualDecision=verdict,
                finalDecision=verdict,
            )
        )
    return [events]


def _idwise_legacy(event: str, **body: Any) -> Webhook:
    doc = {"event": event, "body": {"journeyId": "journey-legacy", "referenceNo": "ref-1", **body}}
    return ("idwise", {"Content-Type": "application/json"}, json.dumps(doc).encode())


@st.composite
def idwise_aml(draw: st.DrawFn) -> History:
    versions = draw(st.lists(st.integers(1, 20), min_size=1, max_size=5, unique=True))
    return [
        [
            p.idwise(
                "AML Monitor Update",
                event_id=f"a{v}",
                updatedAMLVersionNumber=v,
                systemDecision=draw(st.sampled_from(["Complete", "Refer"])),
                previousSystemDecision="Complete",
            )
            for v in versions
        ]
    ]


@st.composite
def idenfy_document_expiry(draw: st.DrawFn) -> History:
    thresholds = draw(
        st.lists(
            st.sampled_from(
                [
                    "DOCUMENT_EXPIRES_WITHIN_30_DAYS",
                    "DOCUMENT_EXPIRES_WITHIN_7_DAYS",
                    "DOCUMENT_EXPIRES_WITHIN_1_DAY",
                    "DOCUMENT_EXPIRED",
                ]
            ),
            min_size=1,
            unique=True,
        )
    )
    return [
        [
            p.idenfy(
                "DOCUMENT_EXPIRATION",
                {
                    "scanRef": "s",
                    "clientId": "c",
                    "expirationThreshold": t,
                    "documentExpiration": "2027-01-01",
                },
            )
            for t in thresholds
        ]
    ]


# iDenfy services whose lifecycles have tiers; the provider gives no order between two
# events of one tier, so a history holds at most one event per tier.
SERVICE_TIERS: dict[str, list[list[dict[str, Any]]]] = {
    "FACIAL_AUTHENTICATION": [
        [{"status": "Pending"}],
        [{"status": s, "failReason": None} for s in ("Success", "Failed", "Expired", "Canceled")],
    ],
    "GOV_ORDERED_DOCUMENT": [
        [{"status": "NOT_ORDERED"}],
        [{"status": "IN_PROGRESS"}],
        [{"status": s} for s in ("FINISHED", "FAILED", "TIMED_OUT")],
    ],
    "SOS_REPORT": [
        [{"status": "IN_PROGRESS"}],
        [{"status": s, "watchlistHitsCount": 0} for s in ("FINISHED", "FAILED")],
    ],
    "AML_MONITORING": [
        [{"status": s, "monitoringId": "mon-1"} for s in ("ACTIVE", "ALERT", "STOPPED")]
        # v2 integrations read alertStatus; DECLINED is v3's STOPPED (migration guide).
        + [{"alertStatus": s, "monitoringId": "mon-1"} for s in ("ACCEPTED", "DECLINED")],
    ],
    "BANK_CARD_VERIFICATION_COMPLETED": [
        [{"status": s} for s in ("NOT_COMPARED", "MATCH", "NO_MATCH")],
    ],
}


@st.composite
def idenfy_services(draw: st.DrawFn) -> History:
    header = draw(st.sampled_from(sorted(SERVICE_TIERS)))
    events = []
    for tier in SERVICE_TIERS[header]:
        if draw(st.booleans()):
            fields = draw(st.sampled_from(tier))
            events.append(p.idenfy(header, {"id": "svc-1", "scanRef": "scan-1", **fields}))
    return [events]


@st.composite
def idenfy_age_estimation(draw: st.DrawFn) -> History:
    """AGE_ESTIMATION carries occurredAt: any number of results, ordered by it."""
    results = draw(st.lists(st.sampled_from(["COMPLETED", "FAILED"]), min_size=1, max_size=4))
    return [
        [
            p.idenfy(
                "AGE_ESTIMATION",
                {
                    "scanRef": "scan-1",
                    "status": status,
                    "outcome": "SUCCESS",
                    "occurredAt": _utc(n * 9, 3),
                },
            )
            for n, status in enumerate(results)
        ]
    ]


HISTORIES = {
    "idenfy/services": idenfy_services(),
    "idenfy/age_estimation": idenfy_age_estimation(),
    "idenfy/kyc": idenfy_kyc(),
    "idenfy/kyc legacy": idenfy_legacy_kyc(),
    "idenfy/kyb": idenfy_kyb(),
    "idenfy/document_expiration": idenfy_document_expiry(),
    "ondato/kyc": ondato_kyc(),
    "ondato/kyb": ondato_kyb(),
    "ondato/kyb_document": ondato_documents(),
    "idwise/kyc": idwise_kyc(),
    "idwise/kyc legacy": idwise_legacy_kyc(),
    "idwise/aml_monitoring": idwise_aml(),
}
