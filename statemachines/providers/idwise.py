"""IDWise: `{event, body: {eventId, journeyId, referenceNo, …}}` (providers.md §3).

Bodies from 2022-2023 have no `eventId` (their dedup key is their content, see `keys`);
they read the same. `referenceNo` is the integrator's reference. No timestamps exist, so
precedence follows the lifecycle (design.md §4c): Finished Step < Finished User Steps <
Finished Journey < Updated Journey / Manually Reviewed. Attempts are not marked either:
`Verification Update Required` opens the next attempt and events belong to the attempt
open when they arrive — the one place where arrival order decides.
`finalDecision` equals `manualDecision` once a reviewer decided, so any journey-level
event carrying a manual decision counts as manual.
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
    event,
    history,
    unrecognised,
    with_references,
)
from statemachines.payload import dig, integer, parse_object, text, token

JsonObject = dict[str, Any]
Handler = Callable[[RawEnvelope, str, str, JsonObject], Normalised]

SYSTEM = {  # systemDecision -> (status, final)
    "complete": ("approved", True),
    "refer": ("in_review", False),
    "incomplete": ("incomplete", True),
}
MANUAL = {"approved": "approved", "rejected": "rejected"}
AML = {
    "complete": "active",
    "approved": "active",
    "refer": "alert",
    "rejected": "alert",
    "incomplete": "pending",
}
# Lifecycle rank within a precedence class.
JOURNEY, UPDATE = 0, 1
# Every Order but an AML update's is a constant: built once (records are immutable).
AUTO_ORDERS = {
    rank: Order(klass=AUTO_DECISION, rank=rank, attempt=None) for rank in (JOURNEY, UPDATE)
}
MANUAL_ORDERS = {
    rank: Order(klass=MANUAL_DECISION, rank=rank, attempt=None) for rank in (JOURNEY, UPDATE)
}
USER_STEPS_ORDER = Order(klass=PROGRESS, attempt=None)
UPDATE_REQUIRED_ORDER = Order(klass=0, attempt=None, opens_attempt=True)
DEADLINE_ORDER = Order(klass=TERMINAL, attempt=None)


def normalise(env: RawEnvelope) -> Normalised:
    doc = parse_object(env.body)
    if isinstance(doc, str):
        return unrecognised(env, doc)
    name = text(doc, "event")
    body = doc.get("body")
    if name is None:
        return unrecognised(env, "IDWise webhook without `event`")
    if not isinstance(body, dict):
        return unrecognised(env, f"{name} without a body object", name)
    journey = text(body, "journeyId")
    if journey is None:
        return unrecognised(env, f"{name} without body.journeyId", name)
    handler = HANDLERS.get(token(name) or "")
    found: Normalised = (
        history(env, "kyc", journey, name, "unknown IDWise event", recognised=False)
        if handler is None
        else handler(env, name, journey, body)
    )
    return with_references(found, text(body, "referenceNo"))


def _journey_result(rank: int) -> Handler:
    """Finished Journey (rank JOURNEY) and Updated Journey (rank UPDATE)."""

    def handle(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
        manual = MANUAL.get(token(text(body, "manualDecision")) or "")
        if manual is not None:
            return _decision(env, name, journey, body, manual, rank)
        decision = text(body, "finalDecision") or text(body, "systemDecision")
        mapped = SYSTEM.get(token(decision) or "")
        if mapped is None:
            # A reviewer's verdict may arrive only as finalDecision (Updated Journey).
            final = MANUAL.get(token(decision) or "")
            if final is not None:
                return _decision(env, name, journey, body, final, rank)
            return unrecognised(env, f"{name} with unknown decision {decision!r}", name)
        status, final_ = mapped
        return event(
            env,
            "kyc",
            journey,
            name,
            status,
            AUTO_ORDERS[rank],
            final=final_,
            decided_by="auto",
            provider_status=decision,
            reasons=_action(body),
        )

    return handle


def _manually_reviewed(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
    decision = text(body, "finalDecision") or text(body, "manualDecision")
    status = MANUAL.get(token(decision) or "")
    if status is None:
        return unrecognised(env, f"{name} with unknown decision {decision!r}", name)
    return _decision(env, name, journey, body, status, UPDATE)


def _decision(
    env: RawEnvelope, name: str, journey: str, body: JsonObject, status: str, rank: int
) -> Normalised:
    return event(
        env,
        "kyc",
        journey,
        name,
        status,
        MANUAL_ORDERS[rank],
        final=True,
        decided_by="manual",
        provider_status=text(body, "finalDecision") or text(body, "manualDecision"),
        reasons=_action(body),
    )


def _user_steps(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
    return event(
        env,
        "kyc",
        journey,
        name,
        "submitted",
        USER_STEPS_ORDER,
        provider_status=text(body, "systemDecision"),
    )


def _update_required(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
    steps = dig(body, "requiredSteps")
    codes = tuple(
        f"step {text(step, 'stepId') or '?'}: {text(step, 'reasonCode') or 'resubmit'}"
        for step in (steps if isinstance(steps, list) else [])
        if isinstance(step, dict)
    )
    trigger = text(body, "trigger")
    return event(
        env,
        "kyc",
        journey,
        name,
        "resubmission_required",
        UPDATE_REQUIRED_ORDER,
        provider_status=trigger,
        reasons=((trigger,) if trigger else ()) + codes,
    )


def _renewal_deadline(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
    return event(
        env,
        "kyc",
        journey,
        name,
        "expired",
        DEADLINE_ORDER,
        final=True,
        provider_status="KYC Renewal Deadline Exceeded",
    )


def _aml_update(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
    decision = text(body, "finalDecision") or text(body, "systemDecision")
    status = AML.get(token(decision) or "")
    if status is None:
        return unrecognised(env, f"{name} with unknown decision {decision!r}", name)
    version = integer(body, "updatedAMLVersionNumber") or 0
    manual = MANUAL.get(token(text(body, "manualDecision")) or "") is not None
    previous = text(body, "previousSystemDecision")
    return event(
        env,
        "aml_monitoring",
        journey,
        name,
        status,
        Order(klass=0, time=version),
        decided_by="manual" if manual else "auto",
        provider_status=decision,
        reasons=(f"previous:{previous}",) if previous else (),
    )


def _step(note: str) -> Handler:
    def handle(env: RawEnvelope, name: str, journey: str, body: JsonObject) -> Normalised:
        step = text(body, "stepId") or text(body, "stepType")
        return history(env, "kyc", journey, name, f"{note} {step}" if step else note)

    return handle


def _action(body: JsonObject) -> tuple[str, ...]:
    action = text(body, "action")
    return (action,) if action else ()


HANDLERS: dict[str, Handler] = {
    "finishedjourney": _journey_result(JOURNEY),
    "updatedjourney": _journey_result(UPDATE),
    "manuallyreviewed": _manually_reviewed,
    "finishedusersteps": _user_steps,
    "verificationupdaterequired": _update_required,
    "kycrenewaldeadlineexceeded": _renewal_deadline,
    "amlmonitorupdate": _aml_update,
    "amlmoniorupdate": _aml_update,  # the docs' own misspelling
    "finishedstep": _step("step finished"),
    "stepsubmitted": _step("step submitted"),  # legacy step webhooks
    "finishedspotcheck": _step("spot check finished"),
    "finishedongoingcheck": _step("spot check finished"),  # older name
}
EVENT_TYPES = (
    "Finished Journey",
    "Manually Reviewed",
    "AML Monitor Update",
    "Finished User Steps",
    "Finished Step",
    "Updated Journey",
    "Verification Update Required",
    "KYC Renewal Deadline Exceeded",
    "Finished Spot Check",
    "Step Submitted",
)
