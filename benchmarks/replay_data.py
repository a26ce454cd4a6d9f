"""A large, realistic raw log for the replay benchmark, written fast.

Per subject one provider's lifecycle (iDenfy preliminary + manual; Ondato IDV and KYC
events; IDWise steps, journey, review), from templates whose ids are swapped per subject,
so a million envelopes take seconds to build. Written in big transactions without fsync:
it is benchmark input, not data anyone acknowledged.

With a master key the rows are sealed as the service's writer seals them (ingest.sealing):
one data key per subject (routing key), wrapped by the master key, headers and body under
it. Replay then pays for unwrapping and unsealing as it does on a production log.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import appending, rawlog, sealing
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope
from statemachines.routing import routing_key
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


def build_raw_log(path: Path, events: int, seed: int = 7, master: MasterKeys | None = None) -> None:
    rng = random.Random(seed)
    conn = rawlog.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    lifecycles = templates()
    rows: list[tuple[object, ...]] = []
    keys = _Keys(master)
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
            rows.append(keys.row(env))
            written += 1
        if len(rows) >= 20_000 or written >= events:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO data_keys (key_id, subject, master, wrapped) VALUES (?,?,?,?)",
                keys.created,
            )
            conn.executemany(
                "INSERT INTO raw_log (provider, received_at, headers, body, dedup_key, "
                "body_sha256, duplicate, auth_method, remote_addr, key_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.execute("COMMIT")
            rows.clear()
            keys.created.clear()
    conn.close()


class _Keys:
    """Data keys by subject, as the writer makes them (appending.RawLogWriter._data_keys)."""

    def __init__(self, master: MasterKeys | None) -> None:
        self.master = master
        self.by_subject: dict[str, tuple[int, AESGCM]] = {}
        self.created: list[tuple[int, str, str, bytes]] = []  # rows for data_keys
        self.last_id = 0

    def row(self, env: RawEnvelope) -> tuple[object, ...]:
        provider, received_at, headers, body, key, sha, auth, remote, _ = appending.row_of(env)
        key_id = None
        if self.master is not None:
            key_id, data_key = self._key(routing_key(env).decode("utf-8", "surrogatepass"))
            aad = sealing.record_aad(provider, key)
            body = sealing.seal(data_key, headers.encode(), body, aad)
            headers = "{}"
        return (provider, received_at, headers, body, key, sha, 0, auth, remote, key_id)

    def _key(self, subject: str) -> tuple[int, AESGCM]:
        found = self.by_subject.get(subject)
        if found is None:
            assert self.master is not None
            raw = sealing.new_data_key()
            fingerprint, wrapped = self.master.wrap(subject, raw)
            if len(self.by_subject) > 1000:  # a subject's deliveries are written together
                self.by_subject.clear()
            self.last_id += 1
            found = self.by_subject[subject] = (self.last_id, AESGCM(raw))
            self.created.append((found[0], subject, fingerprint, wrapped))
        return found
