"""The embedded service end to end: real HTTP, real processes, real SQLite files.

What a user relies on: every provider's event families reach the right projection; the
projections served equal the reference fold of what was stored (so reordering and
duplicates cannot matter); replay rebuilds identical tables; the feed resumes without gaps.
"""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from statemachines import replay
from tests import payloads as p
from tests.e2e.service import KYCFLOW, Service
from tests.payloads import Webhook

STAMP = "2026-11-22T10:00:{:02d}.0000000Z"


def families() -> dict[str, tuple[list[Webhook], dict[str, Any]]]:
    """Per event family: a lifecycle in provider order, and what the subject must end as."""
    return {
        "idenfy/kyc/scan-e2e": (
            [
                p.idenfy_identification(
                    "IDENTIFICATION_AUTO_FINISHED",
                    "scan-e2e",
                    final=False,
                    overall="SUSPECTED",
                    fraud_tags=("FACE_SUSPECTED",),
                ),
                p.idenfy_identification(
                    "IDENTIFICATION_MANUAL_FINISHED",
                    "scan-e2e",
                    overall="APPROVED",
                    manual=True,
                    external_ref="order-e2e",
                ),
            ],
            {
                "status": "approved",
                "final": True,
                "decided_by": "manual",
                "reference": "client-42",
                "references": ["client-42", "order-e2e"],
            },
        ),
        "idenfy/kyb/company-e2e": (
            [
                p.idenfy_company(
                    "COMPANY_SUBMIT",
                    id="company-e2e",
                    clientId="c",
                    submissionTime="2026-11-22T09:00:00Z",
                ),
                p.idenfy_company(
                    "COMPANY_REVIEW",
                    id="company-e2e",
                    companyName="ACME",
                    clientId="c",
                    approvalStatus="DENIED",
                    denyReason="registry",
                    statusChangedBy={"id": 1, "email": "ops@example.com"},
                ),
            ],
            {"status": "rejected", "final": True},
        ),
        "idenfy/aml_monitoring/mon-e2e": (
            [
                p.idenfy(
                    "AML_MONITORING",
                    {"monitoringId": "mon-e2e", "status": "ALERT", "isActive": True},
                )
            ],
            {"status": "alert"},
        ),
        "ondato/kyc/idv-e2e": (
            [
                p.ondato_idv(
                    "InProgress",
                    "idv-e2e",
                    external_ref="customer-e2e",
                    webhook_id="o1",
                    created=STAMP.format(1),
                ),
                p.ondato_kyc("Processed", "idv-e2e", webhook_id="o2", created=STAMP.format(2)),
                p.ondato_kyc(
                    "Approved",
                    "idv-e2e",
                    reason="ManuallyIdentified",
                    webhook_id="o3",
                    created=STAMP.format(3),
                ),
                p.ondato_idv("Completed", "idv-e2e", webhook_id="o4", created=STAMP.format(4)),
            ],
            {
                "status": "approved",
                "final": True,
                "decided_by": "manual",
                "reference": "customer-e2e",
            },
        ),
        "ondato/kyb/kyb-e2e": (
            [
                p.ondato_kyb("Created", "kyb-e2e", webhook_id="k1", created=STAMP.format(1)),
                p.ondato_kyb("Approved", "kyb-e2e", webhook_id="k2", created=STAMP.format(5)),
            ],
            {"status": "approved", "reference": None, "references": []},
        ),
        "ondato/kyb_document/doc-e2e": (
            [
                p.ondato_document(
                    "Created", "doc-e2e", "kyb-e2e", webhook_id="d1", created=STAMP.format(1)
                ),
                p.ondato_document(
                    "Uploaded", "doc-e2e", "kyb-e2e", webhook_id="d2", created=STAMP.format(2)
                ),
                p.ondato_document(
                    "Updated",
                    "doc-e2e",
                    "kyb-e2e",
                    status="Validated",
                    webhook_id="d3",
                    created=STAMP.format(3),
                ),
            ],
            {"status": "validated", "parent_id": "kyb-e2e"},
        ),
        "idwise/kyc/journey-e2e": (
            [
                p.idwise("Finished User Steps", event_id="i1", journey="journey-e2e"),
                p.idwise(
                    "Finished Journey", event_id="i2", journey="journey-e2e", systemDecision="Refer"
                ),
                p.idwise(
                    "Manually Reviewed",
                    event_id="i3",
                    journey="journey-e2e",
                    manualDecision="Rejected",
                    finalDecision="Rejected",
                ),
            ],
            {
                "status": "rejected",
                "final": True,
                "decided_by": "manual",
                "reference": "customer-42",
            },
        ),
        "idwise/aml_monitoring/journey-e2e": (
            [
                p.idwise(
                    "AML Monitor Update",
                    event_id="a1",
                    journey="journey-e2e",
                    systemDecision="Refer",
                    updatedAMLVersionNumber=1,
                ),
                p.idwise(
                    "AML Monitor Update",
                    event_id="a2",
                    journey="journey-e2e",
                    systemDecision="Complete",
                    updatedAMLVersionNumber=2,
                ),
            ],
            {"status": "active"},
        ),
    }


def shuffled_with_duplicates(webhooks: list[Webhook], seed: int) -> list[Webhook]:
    rng = random.Random(seed)
    sent = list(webhooks) + rng.sample(webhooks, k=max(1, len(webhooks) // 3))
    rng.shuffle(sent)
    return sent


def raw_envelopes(service: Service) -> list[Any]:
    from ingest import rawlog
    from streams import masterkeys

    master = masterkeys.for_reading({}, str(service.db))  # the first-run key beside it
    raw = rawlog.connect(rawlog.raw_log_path(service.db), readonly=True, master=master)
    try:
        return list(rawlog.iterate(raw))
    finally:
        raw.close()


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    from projections.schema import PROJECTION_TABLES

    with sqlite3.connect(path) as db:
        return {
            t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in (*PROJECTION_TABLES, "verification_references", "checkpoint")
        }


def test_every_family_reaches_its_projection_in_any_order_with_duplicates(
    service: Service,
) -> None:
    everything = [w for webhooks, _ in families().values() for w in webhooks]
    for webhook in shuffled_with_duplicates(everything, seed=7):
        status, answer = service.send(webhook)
        assert status == 202, answer
    service.wait_projected()
    for key, (_, expected) in families().items():
        status, row = service.get(f"/verifications/{key}")
        assert status == 200, (key, row)
        assert {field: row[field] for field in expected} == expected, key
    # What is served is exactly the reference fold of what was stored.
    reference = replay(raw_envelopes(service))
    for key, state in reference.items():
        assert service.get(f"/verifications/{key}")[1] == state.public()


def test_history_explains_every_delivery_with_its_raw_offset(service: Service) -> None:
    webhooks, _ = families()["idenfy/kyc/scan-e2e"]
    offsets = [service.send(w)[1]["offset"] for w in (webhooks[1], webhooks[0], webhooks[1])]
    service.wait_projected()
    status, history = service.get("/verifications/idenfy/kyc/scan-e2e/history")
    assert status == 200
    assert [t["offset"] for t in history["transitions"]] == [offsets[0]]
    effects = {e["offset"]: e["effect"] for e in history["events"]}
    assert effects == {offsets[0]: "transition", offsets[1]: "late", offsets[2]: "duplicate"}


def test_replay_rebuilds_tables_identical_to_the_live_ones(
    service: Service, tmp_path: Path
) -> None:
    everything = [w for webhooks, _ in families().values() for w in webhooks]
    for webhook in shuffled_with_duplicates(everything, seed=11):
        service.send(webhook)
    service.send(("ondato", {"Content-Type": "application/json"}, b"not json"))
    service.wait_projected()
    service.stop()
    live = table_dump(service.db)
    rebuilt = tmp_path / "rebuilt.db"
    env = {"KYCFLOW_DB": str(service.db), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [KYCFLOW, "replay", "--to", str(rebuilt)], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert table_dump(rebuilt) == live
    assert live["quarantine"], "the unreadable body is quarantined"
    in_place = subprocess.run([KYCFLOW, "replay"], env=env, capture_output=True, timeout=60)
    assert in_place.returncode == 0, in_place.stderr
    assert table_dump(service.db) == live


def read_feed(service: Service, count: int, last_event_id: str | None = None) -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    conn.request("GET", "/feed", headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    events: list[dict] = []
    current: dict[str, str] = {}
    while len(events) < count:
        line = response.fp.readline().decode().rstrip("\n")
        if not line:
            if "data" in current:
                events.append({**json.loads(current["data"]), "event_id": current.get("id")})
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            current[name] = value.strip()
    conn.close()
    return events


def test_status_feed_resumes_after_last_event_id_without_gaps(service: Service) -> None:
    everything = [w for webhooks, _ in families().values() for w in webhooks]
    for webhook in everything:
        service.send(webhook)
    service.wait_projected()
    with sqlite3.connect(service.db) as db:
        total = db.execute("SELECT count(*) FROM transitions").fetchone()[0]
    first = read_feed(service, 5)
    rest = read_feed(service, total - 5, last_event_id=first[-1]["event_id"])
    ids = [int(e["event_id"]) for e in first + rest]
    assert ids == list(range(ids[0], ids[0] + total))
    # Each status change names its subject's reference, as the subject's row does.
    for event in first + rest:
        key = f"{event['provider']}/{event['kind']}/{event['id']}"
        assert event["reference"] == service.get(f"/verifications/{key}")[1]["reference"]
    assert {e["reference"] for e in first + rest} >= {"client-42", "customer-e2e", None}
