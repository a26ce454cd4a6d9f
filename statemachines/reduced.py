"""What remains of a delivery once its personal data is gone, and erasure as a log record.

Erasure and retention cannot rewrite history (a Kafka topic cannot drop one record), so
they *reduce* it: a delivery's raw body becomes unreadable (its data key destroyed) and
the canonical event it had become is kept instead — an event carries statuses, codes,
the provider's ids and times, and no personal data except the integrator's reference,
which is dropped unless the operator keeps it. The fold reads that event as it read the
body, so replay after erasure yields the same decision trail.

An erasure is itself a record in the raw log (provider `kycflow`): folded in log order,
it marks the subject erased and drops the references the state holds. Replaying the log
therefore reproduces the erasure, and nothing outside the log has to be consulted.
"""

from __future__ import annotations

import json
from typing import Any

from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Normalised, Order, Subject, unrecognised
from statemachines.payload import parse_object

CONTROL = "kycflow"  # the provider of records kycflow writes itself
ERASE = "kycflow.erase"  # event type of an erasure record
ERASED = "personal data erased; no event kept"  # quarantine reason of a fully erased delivery
SCOPES = ("personal", "all")  # erase the personal data / everything, decision trail included


def event_to_json(event: CanonicalEvent, *, keep_reference: bool = False) -> str:
    """The reduced form of an event: JSON without personal data (see the module docstring)."""
    data: dict[str, Any] = event._asdict()
    data["subject"] = list(event.subject)
    data["order"] = list(event.order)
    data["parent"] = list(event.parent) if event.parent else None
    data["reasons"] = list(event.reasons)
    if keep_reference:
        data["references"] = list(event.references)
    else:
        data["reference"], data["references"] = None, []
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def event_from_json(text: str, env: RawEnvelope) -> CanonicalEvent:
    """Inverse of `event_to_json`, at the envelope's place in the log."""
    data = json.loads(text)
    return CanonicalEvent(
        **{
            **data,
            "subject": Subject(*data["subject"]),
            "order": Order(*data["order"]),
            "parent": Subject(*data["parent"]) if data["parent"] else None,
            "reasons": tuple(data["reasons"]),
            "references": tuple(data["references"]),
            "dropped": tuple(data.get("dropped", ())),  # absent from events reduced before it
            "wiped": tuple(data.get("wiped", ())),
            "offset": env.offset,
        }
    )


def read_reduced(env: RawEnvelope) -> Normalised:
    """The event a reduced envelope stands for; a quarantine entry when nothing was kept."""
    if not env.reduced:
        return unrecognised(env, ERASED)
    try:
        return event_from_json(env.reduced, env)
    except (ValueError, TypeError, KeyError) as exc:
        return unrecognised(env, f"unreadable reduced event: {type(exc).__name__}")


def erase_record(
    subject: str,
    *,
    scope: str,
    keep_reference: bool,
    by: str,
    received_at: str,
    dropped: tuple[int, ...] = (),
    wiped: tuple[int, ...] = (),
) -> RawEnvelope:
    """The raw-log record of an erasure of `subject` (a subject key), asked for by `by`
    ("cli", "api:<token fingerprint>" — never a person's data). `dropped`: log positions
    of other deliveries reduced to nothing with it (quarantined ones that named the
    subject), whose quarantine rows the projections drop. `wiped` (scope "all"): positions of
    the subject's transitions it deletes (`statemachines.process.standing_transitions`)."""
    if scope not in SCOPES:
        raise ValueError(f"erasure scope must be one of {', '.join(SCOPES)}")
    fields = {"subject": subject, "scope": scope, "keep_reference": keep_reference, "by": by}
    body = json.dumps(
        {**fields, "dropped": list(dropped), "wiped": list(wiped)},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return RawEnvelope(
        provider=CONTROL,
        body=body,
        headers={},
        received_at=received_at,
        dedup_key=f"{CONTROL}:erase:{subject}@{received_at}",
        body_sha256="",
        auth_method=by,
    )


def read_erasure(env: RawEnvelope) -> Normalised:
    """Inverse of `erase_record`: the event the fold applies to the erased subject, a
    history-only one (no status) that carries the scope. Anything else under provider
    `kycflow` is quarantined: ingest never accepts that provider, so only kycflow writes it.
    """
    doc = parse_object(env.body)
    if not isinstance(doc, dict):
        return unrecognised(env, "unreadable kycflow record")
    subject, scope, by = doc.get("subject"), doc.get("scope"), doc.get("by")
    dropped, wiped = doc.get("dropped", []), doc.get("wiped", [])
    if not (isinstance(subject, str) and subject.count("/") >= 2 and scope in SCOPES):
        return unrecognised(env, "malformed erasure record", ERASE)
    for name, positions in (("dropped", dropped), ("wiped", wiped)):
        if not (isinstance(positions, list) and all(type(n) is int for n in positions)):
            return unrecognised(env, f"malformed erasure record: {name}", ERASE)
    return CanonicalEvent(
        subject=Subject(*subject.split("/", 2)),
        event_type=ERASE,
        status=None,
        order=Order(klass=0),
        dedup_key=env.dedup_key,
        offset=env.offset,
        received_at=env.received_at,
        note=f"erased by {by}" if isinstance(by, str) and by else "erased",
        erase=str(scope),
        keep_reference=doc.get("keep_reference") is True,
        dropped=tuple(dropped),
        wiped=tuple(wiped),
    )
