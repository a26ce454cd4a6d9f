"""A large, realistic raw log for the replay benchmark, written fast.

Per subject one provider's lifecycle (iDenfy preliminary + manual; Ondato IDV and KYC
events; IDWise steps, journey, review), from templates whose ids are swapped per subject,
so a million envelopes take seconds to build. Written in big transactions without fsync:
it is benchmark input, not data anyone acknowledged.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

from ingest import rawlog
from statemachines.envelope import RawEnvelope
from tests import payloads as p
from tests.payloads import Webhook

SUBJECT = "11111111-1111-4111-8111-111111111111"
EVENT = "22222222-2222-4222-8222-222222222222"


def templates() -> list[list[Webhook]]:
    s, e = SUBJECT, EVENT
    created = "2026-11-22T10:00:0{}.1234567Z"
    return [
        [
            p.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", s, final=False),
            p.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", s, manual=True),
        ],
        [
            p.ondato_idv("InProgress", s, webhook_id=e + "1", created=created.format(1)),
            p.ondato_kyc("Created", s, webhook_id=e + "2", created=created.format(2)),
            p.ondato_kyc("Processed", s, webhook_id=e + "3", created=created.format(3)),
            p.ondato_kyc(
                "Approved",
                s,
                reason="ManuallyIdentified",
                webhook_id=e + "4",
                created=created.format(4),
            ),
        ],
        [
            p.idwise("Finished Step", event_id=e + "1", journey=s, stepId="20"),
            p.idwise("Finished User Steps", event_id=e + "2", journey=s),
            p.idwise("Finished Journey", event_id=e + "3", journey=s, systemDecision="Refer"),
            p.idwise(
                "Manually Reviewed",
                event_id=e + "4",
                journey=s,
                manualDecision="Approved",
                finalDecision="Approved",
            ),
        ],
    ]


def build_raw_log(path: Path, events: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    conn = rawlog.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    lifecycles = templates()
    batch: list[tuple[object, ...]] = []
    written = subjects = 0
    while written < events:
        subjects += 1
        subject = str(uuid.UUID(int=rng.getrandbits(128)))
        event_base = str(uuid.UUID(int=rng.getrandbits(128)))
        for provider, headers, body in lifecycles[subjects % 3]:
            body = body.replace(SUBJECT.encode(), subject.encode())
            body = body.replace(EVENT.encode(), event_base.encode())
            env = RawEnvelope.receive(
                provider,
                body,
                headers,
                "2026-11-22T10:00:00.000000Z",
                auth_method="bench",
                remote_addr="127.0.0.1",
            )
            batch.append(
                (
                    env.provider,
                    env.received_at,
                    json.dumps(dict(env.headers)),
                    env.body,
                    env.dedup_key,
                    env.body_sha256,
                    0,
                    env.auth_method,
                    env.remote_addr,
                )
            )
            written += 1
        if len(batch) >= 20_000 or written >= events:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO raw_log (provider, received_at, headers, body, dedup_key, "
                "body_sha256, duplicate, auth_method, remote_addr) VALUES (?,?,?,?,?,?,?,?,?)",
                batch,
            )
            conn.execute("COMMIT")
            batch.clear()
    conn.close()
