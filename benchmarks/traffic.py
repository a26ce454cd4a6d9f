"""Realistic provider traffic for the benchmarks: what a runtime reads from the log.

Per provider, a typical subject history (iDenfy preliminary + manual result on ~2.5 KB
bodies; Ondato's IDV and KYC events; IDWise steps, journey and review), interleaved
across subjects, optionally with duplicate deliveries and reordered results.
"""

from __future__ import annotations

import json
import random
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachines.envelope import RawEnvelope
from tests import payloads
from tests.payloads import Webhook

SEED = 20261122
EPOCH = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

History = list[Webhook]  # one subject's webhooks, in the order the provider sends them


def subject_id(rng: random.Random) -> str:
    """A UUID-shaped id, as iDenfy scanRef, Ondato ids and IDWise journey ids look."""
    return str(uuid.UUID(int=rng.getrandbits(128)))


# The fields providers.md §1.3 lists for IdentificationWebhook that `tests.payloads` leaves
# out: real bodies carry them, which takes the body from ~0.7 KB to ~2.5 KB.
_IDENFY_DATA: dict[str, Any] = {
    "docPersonalCode": "39001010000",
    "docExpiry": "2031-05-14",
    "docDateOfIssue": "2021-05-14",
    "birthPlace": "VILNIUS",
    "authority": "MIGRATION DEPARTMENT",
    "address": None,
    "docTemporaryAddress": None,
    "mothersMaidenName": None,
    "docBirthName": None,
    "docPatronymic": None,
    "driverLicenseCategory": None,
    "manuallyDataChanged": False,
    "fullName": "JOHN DOE",
    "selectedCountry": "LT",
    "orgFirstName": "JOHN",
    "orgLastName": "DOE",
    "orgNationality": "LIETUVOS",
    "orgBirthPlace": "VILNIUS",
    "orgAuthority": "MIGRACIJOS DEPARTAMENTAS",
    "orgAddress": None,
    "orgTemporaryAddress": None,
    "orgMothersMaidenName": None,
    "orgPatronymic": None,
    "orgBirthName": None,
    "ageEstimate": "OVER_25",
    "clientIpProxyRiskLevel": "LOW",
    "duplicateFaces": [],
    "duplicateDocFaces": [],
    "additionalData": {},
}
_IDENFY_EXTRA: dict[str, Any] = {
    "additionalStepPdfUrls": {},
    "amlCheck": None,
    "CRIMINAL_CHECK": [],
    "gdcMatch": None,
    "manualAddress": None,
    "manualAddressMatch": False,
    "registryCenterCheck": None,
    "addressVerification": None,
    "questionnaireAnswers": None,
    "riskAssessment": None,
}


def _presigned(scan_ref: str, name: str) -> str:
    return (
        f"https://s3.eu-west-1.amazonaws.com/production.users.storage/users_storage/"
        f"users/{scan_ref}/{name}.png?AWSAccessKeyId=AKIAEXAMPLEEXAMPLE00&Signature="
        f"{'x' * 28}%3D&Expires=1700086400"
    )


def idenfy_full(event_type: str, scan_ref: str, **kw: Any) -> Webhook:
    """`payloads.idenfy_identification` with the rest of a real body (~2.5 KB)."""
    _, _, body = payloads.idenfy_identification(event_type, scan_ref, **kw)
    doc = json.loads(body)
    doc["data"].update(_IDENFY_DATA)
    doc.update(_IDENFY_EXTRA)
    urls = {name: _presigned(scan_ref, name.lower()) for name in ("FRONT", "BACK", "FACE")}
    doc["fileUrls"] = {**urls, "FRONT_VIDEO": None, "BACK_VIDEO": None, "FACE_VIDEO": None}
    return payloads.idenfy(event_type, doc)


def idenfy_history(rng: random.Random) -> History:
    """Automatic preliminary result (final: false), then the manual decision."""
    scan_ref, start = subject_id(rng), rng.randrange(1_700_000_000, 1_800_000_000)
    overall, tags = ("DENIED", ("DOC_FAKE",)) if rng.random() < 0.2 else ("APPROVED", ())
    return [
        idenfy_full(
            "IDENTIFICATION_AUTO_FINISHED", scan_ref, final=False, start=start, finish=start + 60
        ),
        idenfy_full(
            "IDENTIFICATION_MANUAL_FINISHED",
            scan_ref,
            manual=True,
            overall=overall,
            fraud_tags=tags,
            start=start,
            finish=start + 60,
        ),
    ]


def ondato_created(second: int) -> str:
    return f"2026-11-22T10:00:{second:02d}.1234567Z"


def ondato_history(rng: random.Random) -> History:
    """IDV in progress, KYC created and processed, IDV completed, then a manual decision."""
    idv, kyc = subject_id(rng), subject_id(rng)
    ids = [subject_id(rng) for _ in range(5)]
    decision = "Rejected" if rng.random() < 0.2 else "Approved"
    return [
        payloads.ondato_idv("InProgress", idv, webhook_id=ids[0], created=ondato_created(1)),
        payloads.ondato_kyc(
            "Created", idv, kyc_id=kyc, webhook_id=ids[1], created=ondato_created(2)
        ),
        payloads.ondato_kyc(
            "Processed", idv, kyc_id=kyc, webhook_id=ids[2], created=ondato_created(3)
        ),
        payloads.ondato_idv("Completed", idv, webhook_id=ids[3], created=ondato_created(4)),
        payloads.ondato_kyc(
            decision,
            idv,
            kyc_id=kyc,
            reason=f"Manually {decision.lower()}",
            webhook_id=ids[4],
            created=ondato_created(9),
        ),
    ]


def idwise_history(rng: random.Random) -> History:
    """A step, user steps finished, journey referred, then manually reviewed."""
    journey = subject_id(rng)
    ids = [subject_id(rng) for _ in range(4)]
    decision = "Rejected" if rng.random() < 0.2 else "Approved"
    return [
        payloads.idwise("Finished Step", event_id=ids[0], journey=journey, stepId="20"),
        payloads.idwise(
            "Finished User Steps", event_id=ids[1], journey=journey, systemDecision="Refer"
        ),
        payloads.idwise(
            "Finished Journey", event_id=ids[2], journey=journey, systemDecision="Refer"
        ),
        payloads.idwise(
            "Manually Reviewed",
            event_id=ids[3],
            journey=journey,
            finalDecision=decision,
            manualDecision=decision,
        ),
    ]


HISTORIES: dict[str, Callable[[random.Random], History]] = {
    "idenfy": idenfy_history,
    "ondato": ondato_history,
    "idwise": idwise_history,
}


# --- Streams: what the runtime reads from the log ----------------------------------------
def received_at(offset: int) -> str:
    """A distinct ingest timestamp per envelope, 1 ms apart."""
    return (EPOCH + timedelta(milliseconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def disturb(history: History, rng: random.Random, duplicates: float, swaps: float) -> History:
    """Swap the decision with the event before it; redeliver one webhook."""
    history = list(history)
    if rng.random() < swaps:
        history[-1], history[-2] = history[-2], history[-1]
    if rng.random() < duplicates:
        history.append(rng.choice(history))
    return history


def interleave(histories: list[History], rng: random.Random) -> list[Webhook]:
    """Subjects start at random times and overlap; each keeps its own (disturbed) order."""
    timed: list[tuple[float, int, Webhook]] = []
    for index, history in enumerate(histories):
        moment = rng.uniform(0, len(histories))
        for webhook in history:
            timed.append((moment, index, webhook))
            moment += rng.uniform(1, 30)
    timed.sort(key=lambda item: (item[0], item[1]))
    return [webhook for _, _, webhook in timed]


def stream(
    providers: Sequence[str], subjects: int, *, duplicates: float = 0.0, swaps: float = 0.0
) -> list[RawEnvelope]:
    """Envelopes at consecutive log offsets; providers take turns by subject."""
    rng = random.Random(SEED)
    histories = [
        disturb(HISTORIES[providers[i % len(providers)]](rng), rng, duplicates, swaps)
        for i in range(subjects)
    ]
    webhooks = interleave(histories, rng)
    return [payloads.deliver(w, offset, received_at(offset)) for offset, w in enumerate(webhooks)]


@dataclass(frozen=True)
class Workload:
    name: str
    envelopes: list[RawEnvelope]

    @property
    def mean_body(self) -> float:
        return statistics.fmean(len(env.body) for env in self.envelopes)


def workloads() -> list[Workload]:
    return [
        Workload("idenfy", stream(["idenfy"], 2_500)),
        Workload("ondato", stream(["ondato"], 1_000)),
        Workload("idwise", stream(["idwise"], 1_250)),
        Workload(
            "mixed (dup 30%, swap 25%)",
            stream(["idenfy", "ondato", "idwise"], 1_400, duplicates=0.3, swaps=0.25),
        ),
    ]
