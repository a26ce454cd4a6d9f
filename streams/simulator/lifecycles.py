"""Realistic lifecycles: one verification's webhooks, in the order its provider sends them.

Built from the payload builders in `streams.simulator.samples`; ids and provider timestamps
come from a seeded random generator, so `kycflow simulate --seed S` sends the same bytes every time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from streams.simulator.samples import (
    Webhook,
    idenfy,
    idenfy_company,
    idenfy_identification,
    idwise,
    ondato_document,
    ondato_idv,
    ondato_kyb,
    ondato_kyc,
)

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def uid(rng: random.Random) -> str:
    """A UUID-shaped id (scanRef, Ondato ids, IDWise journeys look so), drawn from the seed."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Clock:
    """One verification's provider timestamps: strictly increasing, derived from the seed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.now = rng, EPOCH + timedelta(seconds=rng.randrange(30 * 86_400))

    def epoch(self) -> int:
        self.now += timedelta(
            seconds=self.rng.randint(2, 900), microseconds=self.rng.randrange(10**6)
        )
        return int(self.now.timestamp())

    def utc(self) -> str:
        """ISO-8601 with 0, 3 or 7 fractional digits, as Ondato's `createdUtc` varies."""
        self.epoch()
        digits = self.rng.choice((0, 3, 7))
        fraction = f".{self.now.microsecond:06d}0"[: digits + 1] if digits else ""
        return self.now.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


Lifecycle = Callable[[random.Random, Clock], list[Webhook]]
AUTO, MANUAL = "IDENTIFICATION_AUTO_FINISHED", "IDENTIFICATION_MANUAL_FINISHED"


def idenfy_kyc_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """Preliminary then manual result, or a final automatic one; resubmission; expiry."""
    scan = uid(rng)
    # The integrator's ids, given at token creation and returned as-is in every webhook.
    client = f"client-{rng.randrange(10**6)}"
    who = (client, f"order-{rng.randrange(10**6)}" if rng.random() < 0.5 else None)
    path = rng.choices(("review", "auto", "resubmit", "expire", "cancel"), (5, 3, 2, 1, 1))[0]
    if path in ("expire", "cancel"):  # the user never finished: no decision in this attempt
        header = "IDENTIFICATION_EXPIRED" if path == "expire" else "IDENTIFICATION_CANCELLED"
        start = clock.epoch()
        ended = partial(idenfy_identification, client_id=who[0], external_ref=who[1])
        return [ended(header, scan, overall="EXPIRED", start=start, finish=start)]
    if path != "resubmit":
        return _idenfy_attempt(rng, clock, scan, AUTO, who, review=path == "review")
    denied = _idenfy_attempt(rng, clock, scan, AUTO, who, review=True, verdict="DENIED")
    # The resubmission and its results carry a later startTime: that makes attempt 2.
    resubmitted = "IDENTIFICATION_RESUBMITTED"
    return denied + _idenfy_attempt(rng, clock, scan, resubmitted, who, review=rng.random() < 0.5)


def _idenfy_attempt(
    rng: random.Random,
    clock: Clock,
    scan: str,
    opener: str,
    who: tuple[str, str | None],
    *,
    review: bool,
    verdict: str = "",
) -> list[Webhook]:
    """The automatic result and, when it was preliminary, the reviewer's (same startTime)."""
    start = clock.epoch()
    result = partial(
        idenfy_identification,
        scan_ref=scan,
        start=start,
        finish=clock.epoch(),
        client_id=who[0],
        external_ref=who[1],
    )
    verdict = verdict or rng.choices(("APPROVED", "DENIED", "SUSPECTED"), (6, 2, 1))[0]
    tags = ("DOCUMENT_NUMBER",) if verdict == "DENIED" else ()
    if not review:
        return [result(opener, overall=verdict, mismatch_tags=tags)]
    preliminary = rng.choice(("REVIEWING", "SUSPECTED"))
    return [
        result(opener, final=False, overall=preliminary),
        result(MANUAL, overall=verdict, mismatch_tags=tags, manual=True),
    ]


def idenfy_kyb_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """Submit (again after an information request), AML review, review; rarely a delete."""
    company, client = uid(rng), f"client-{rng.randrange(10**6)}"
    submission = {"id": company, "clientId": client}
    events = [idenfy_company("COMPANY_SUBMIT", submissionTime=clock.utc(), **submission)]
    if rng.random() < 0.3:
        token = uid(rng).replace("-", "")
        ask = {"token": token, "email": "ops@example.com", "manager": None, "status": "REQUESTED"}
        info = idenfy_company("COMPANY_INFO_REQUEST", companyId=company, date=clock.utc(), **ask)
        events += [info, idenfy_company("COMPANY_SUBMIT", submissionTime=clock.utc(), **submission)]
    if rng.random() < 0.5:  # `id` is the reviewed person's; the company is `companyId`
        person = {
            "id": uid(rng),
            "amlReviewSubjectType": rng.choice(("BENEFICIARY", "SHAREHOLDER")),
        }
        aml = idenfy_company(
            "COMPANY_AML_REVIEW", companyId=company, overallStatus="NO_FLAGS", **person
        )
        events.append(aml)
    verdict = rng.choices(("APPROVED", "DENIED"), (4, 1))[0]
    reviewer = {"id": rng.randrange(1, 100), "email": "reviewer@example.com"}
    review = {"companyName": "ACME UAB", "clientId": client, "statusChangedBy": reviewer}
    events.append(idenfy_company("COMPANY_REVIEW", id=company, approvalStatus=verdict, **review))
    if rng.random() < 0.1:
        events.append(
            idenfy_company("COMPANY_DELETE", companyId=company, manager=None, date=clock.utc())
        )
    return events


def idenfy_aml_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """One monitoring result: iDenfy gives no order between two, so one per subject."""
    flagged = rng.random() < 0.25
    person = {"name": "JOHN", "surname": "DOE", "nationality": "LT", "dob": "1990-01-01"}
    return [
        idenfy(
            "AML_MONITORING",
            {
                "monitoringId": uid(rng),
                **person,
                "isActive": True,
                "expiration": clock.utc(),
                "scanRefList": [uid(rng)],
                # v3 status and the v2 alertStatus: both are sent (AML migration guide).
                "status": "ALERT" if flagged else "ACTIVE",
                "alertStatus": "ALERT" if flagged else "ACCEPTED",
                "pepsStatus": "FLAGS_FOUND" if flagged else "NO_FLAGS",
                "sanctionsStatus": "NO_FLAGS",
                "adverseMediaStatus": "NO_FLAGS",
                "results": [],
            },
        )
    ]


def ondato_kyc_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """IDV status changes around the KYC identification; envelope createdUtc increases."""
    idv, kyc = uid(rng), uid(rng)
    reference = f"customer-{rng.randrange(10**6)}"
    path = rng.choices(("Approved", "Rejected", "Aborted", "Expired"), (6, 2, 1, 1))[0]

    def status(value: str) -> Webhook:  # the IDV resource carries the integrator's reference
        stamp = {"webhook_id": uid(rng), "created": clock.utc(), "delivered": clock.utc()}
        return ondato_idv(value, idv, external_ref=reference, **stamp)

    def step(event: str, reason: str | None = None, state: str | None = None) -> Webhook:
        stamp = {"webhook_id": uid(rng), "created": clock.utc()}
        return ondato_kyc(event, idv, status=state, reason=reason, kyc_id=kyc, **stamp)

    events = [status("Pending"), status("InProgress")]
    if path in ("Aborted", "Expired"):
        return [*events, status(path)]
    events += [step("Created"), step("Processed"), status("Completed")]
    how = rng.choice(("Automatically", "Manually"))
    events.append(step(path, how + ("Identified" if path == "Approved" else "Unidentified")))
    if path == "Approved" and rng.random() < 0.2:  # document data corrected in the portal
        events.append(step("Updated", state="Approved"))
    return events


def ondato_kyb_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """A KYB identification with 1-3 documents, each created, uploaded and checked."""
    kyb, verdicts = uid(rng), []

    def stamp() -> dict[str, str]:
        return {"webhook_id": uid(rng), "created": clock.utc()}

    events = [ondato_kyb("Created", kyb, **stamp())]
    for _ in range(rng.randint(1, 3)):
        document, verdict = uid(rng), rng.choices(("Validated", "Invalidated"), (4, 1))[0]
        for event, state in (
            ("Created", "NeedReview"),
            ("Uploaded", "NeedReview"),
            ("Updated", verdict),
        ):
            events.append(ondato_document(event, document, kyb, status=state, **stamp()))
        if verdict == "Invalidated" and rng.random() < 0.5:
            events.append(ondato_document("Deleted", document, kyb, status=verdict, **stamp()))
        verdicts.append(verdict)
    outcome = "Approved" if set(verdicts) == {"Validated"} else "Rejected"
    return [*events, ondato_kyb(outcome, kyb, **stamp())]


def idwise_kyc_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """Steps, user steps, journey; a Refer is reviewed, or asks for a second attempt."""
    journey, reference = uid(rng), f"customer-{rng.randrange(10**6)}"

    def send(event: str, **body: Any) -> Webhook:
        return idwise(event, event_id=uid(rng), journey=journey, referenceNo=reference, **body)

    decision = rng.choices(("Complete", "Refer", "Incomplete"), (5, 3, 1))[0]
    events = _idwise_attempt(send, decision)
    if decision == "Refer" and rng.random() < 0.3:
        steps = [{"stepId": "2", "reasonCode": "SELFIE_BLURRY"}]
        trigger = {"trigger": "Manual Review", "requiredSteps": steps}
        events.append(send("Verification Update Required", **trigger))
        decision = rng.choice(("Complete", "Refer"))
        events += _idwise_attempt(send, decision)
    if decision == "Refer":
        verdict = rng.choice(("Approved", "Rejected"))
        review = {"manualDecision": verdict, "finalDecision": verdict}
        events.append(send("Manually Reviewed", systemDecision="Refer", **review))
    return events


def _idwise_attempt(send: Callable[..., Webhook], decision: str) -> list[Webhook]:
    journey = {"systemDecision": decision, "manualDecision": None, "finalDecision": decision}
    return [
        send("Finished Step", stepId="0"),
        send("Finished Step", stepId="2"),
        send("Finished User Steps", systemDecision=decision),
        send("Finished Journey", **journey),
    ]


def idwise_aml_lifecycle(rng: random.Random, clock: Clock) -> list[Webhook]:
    """Ongoing monitoring updates, ordered by `updatedAMLVersionNumber`."""
    journey, previous, events = uid(rng), "Complete", []
    for version in range(1, rng.randint(1, 3) + 1):
        decision = rng.choices(("Complete", "Refer"), (2, 1))[0]
        update: dict[str, Any] = {"systemDecision": decision, "previousSystemDecision": previous}
        update["updatedAMLVersionNumber"] = version
        webhook = idwise("AML Monitor Update", event_id=uid(rng), journey=journey, **update)
        events.append(webhook)
        previous = decision
    return events
