"""Kafka mode end to end: HTTP -> kycflow.raw -> Faust worker -> output topics ->
projector -> read API, on a real Kafka-protocol broker with real processes.

The differential test is the contract of design.md §5.6: the same raw webhooks,
reordered and duplicated, give the same projections in embedded and Kafka mode.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from ingest import appending, rawlog
from statemachines.envelope import RawEnvelope
from statemachines.process import replay
from streams.kafka.config import KafkaSettings
from streams.kafka.keys import RecordOpener, master_from_env
from tests.e2e.service import CREDENTIALS, Service
from tests.e2e.test_embedded import families, shuffled_with_duplicates
from tests.kafka.stack import KafkaStack, append_to_kafka, raw_records
from tests.payloads import Webhook

NOT_JSON: Webhook = ("ondato", {"Content-Type": "application/json"}, b"not json")


def traffic(seed: int) -> list[Webhook]:
    everything = [w for webhooks, _ in families().values() for w in webhooks]
    return [*shuffled_with_duplicates(everything, seed=seed), NOT_JSON]


def send_all(service: Service, webhooks: list[Webhook]) -> list[int]:
    offsets = []
    for webhook in webhooks:
        status, answer = service.send(webhook)
        assert status == 202, answer
        offsets.append(answer["offset"])
    return offsets


def test_every_family_flows_from_http_to_the_read_api(stack: KafkaStack) -> None:
    service = stack.serve()
    stack.start_worker()
    stack.start_projector()
    sent = traffic(seed=3)
    offsets = send_all(service, sent)
    assert len(set(offsets)) == len(sent), "every delivery has its own raw position"
    stack.wait_projected(len(sent))
    for key, (_, expected) in families().items():
        status, row = service.get(f"/verifications/{key}")
        assert status == 200, (key, row)
        assert {name: row[name] for name in expected} == expected, key
    # Served rows are exactly the reference fold of what the raw topic holds.
    stored = raw_records(stack)
    assert sorted(stored) == sorted(offsets)
    reference = replay(opened(stack, [(pos, stored[pos]) for pos in offsets]))
    for key, state in reference.items():
        assert service.get(f"/verifications/{key}")[1] == state.public(), key
    with sqlite3.connect(stack.db) as db:
        quarantined = db.execute('SELECT "offset", reason FROM quarantine').fetchall()
    assert quarantined == [(offsets[-1], quarantined[0][1])], "the unreadable body is kept"


def opened(stack: KafkaStack, records: list[tuple[int, bytes]]) -> list[RawEnvelope]:
    """Raw records as the worker reads them: sealed ones opened with the deployment's
    master key (`serve` made it on first run, beside the database)."""
    settings = KafkaSettings.from_config(stack.env)
    assert settings is not None
    opener = RecordOpener(settings, master_from_env(stack.env, str(stack.db)))
    try:
        return opener.open(records)
    finally:
        opener.close()


def test_ingest_produces_with_an_idempotent_producer(stack: KafkaStack) -> None:
    """acks=all and idempotent: the broker handed the producer an id (aiokafka's own
    InitProducerId v0 is refused by Tansu; ingest.aiokafka_compat asks with v3)."""
    import asyncio

    from ingest.kafka_log import KafkaAppender

    env = RawEnvelope.receive("idwise", b'{"event": "x"}', [], "2026-11-22T12:00:00Z")

    async def append() -> tuple[int, int]:
        appender = KafkaAppender([stack.broker.bootstrap], f"{stack.name}.raw")
        try:
            receipt = await appender.append(env)
            assert appender.producer is not None
            return receipt.offset, appender.producer._txn_manager.producer_id
        finally:
            await appender.close()

    offset, producer_id = asyncio.run(append())
    assert offset in raw_records(stack)
    assert producer_id >= 0


def test_tail_prints_each_subjects_status_changes(stack: KafkaStack) -> None:
    service = stack.serve()
    stack.start_worker()
    webhooks, _ = families()["idenfy/kyc/scan-e2e"]
    send_all(service, webhooks)
    done = stack.run("tail", "--from-beginning", "--json", "--limit", "2", "--idle-timeout", "20")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["subject"], r["status"], r["version"]) for r in records] == [
        ("idenfy/kyc/scan-e2e", "in_review", 1),
        ("idenfy/kyc/scan-e2e", "approved", 2),
    ]
    assert "fold" not in records[0], "subscribers get the public projection"
    # `inspect` reads the raw deliveries back from the raw topic.
    stack.start_projector()
    stack.wait_projected(len(webhooks))
    shown = stack.run("inspect", "idenfy", "kyc", "scan-e2e", "--json")
    assert shown.returncode == 0, shown.stderr
    timeline = json.loads(shown.stdout)["timeline"]
    assert [step["asserts"] for step in timeline] == ["in_review", "approved"]


def test_same_webhooks_give_the_same_projections_in_both_modes(
    stack: KafkaStack, tmp_path: Path
) -> None:
    # The same raw webhooks — identical envelopes, receive times included — appended to
    # the embedded raw log and to kycflow.raw, each by its mode's own appender.
    envelopes = [
        RawEnvelope.receive(provider, body, headers, f"2026-11-22T12:00:{i:02d}.000000Z")
        for i, (provider, headers, body) in enumerate(traffic(seed=5))
    ]
    embedded = Service(tmp_path / "embedded.db", dict(CREDENTIALS))
    writer = appending.RawLogWriter(rawlog.raw_log_path(embedded.db))
    embedded_offsets = [receipt.offset for receipt in writer.append(envelopes)]
    writer.close()
    embedded.start()
    try:
        embedded.wait_projected()
    finally:
        embedded.stop()
    stack.start_worker()
    stack.start_projector()
    kafka_offsets = [receipt.offset for receipt in append_to_kafka(stack, envelopes)]
    stack.wait_projected(len(envelopes))
    # Raw coordinates differ by design (a SQLite offset vs a Kafka partition position);
    # both are renamed to the delivery's index in the sequence sent.
    left = comparable(embedded.db, embedded_offsets)
    right = comparable(stack.db, kafka_offsets)
    for table in left:
        only = set(left[table]) ^ set(right[table])
        assert left[table] == right[table], (table, sorted(only, key=repr))
    assert left["transitions"] and left["quarantine"] and left["documents"]


def test_replay_from_kafka_rebuilds_what_the_projector_built(
    stack: KafkaStack, tmp_path: Path
) -> None:
    service = stack.serve()
    stack.start_worker()
    stack.start_projector()
    sent = traffic(seed=9)
    offsets = send_all(service, sent)
    stack.wait_projected(len(sent))
    rebuilt = tmp_path / "rebuilt.db"
    done = stack.run("replay", "--from-kafka", "--to", str(rebuilt))
    assert done.returncode == 0, done.stderr
    assert comparable(rebuilt, offsets) == comparable(stack.db, offsets)
    again = stack.run("replay", "--from-kafka", "--to", str(rebuilt))
    assert again.returncode == 2 and "exists" in again.stderr


def _rename_in(reason: str | None, rename: Any) -> str | None:
    """Annotation reasons cite offsets ("outranked by … at offset 12")."""
    if reason is None:
        return None
    return re.sub(r"offset (\d+)", lambda m: f"offset #{rename(int(m[1]))}", reason)


def comparable(db: Path, offsets: list[int]) -> dict[str, list[tuple[Any, ...]]]:
    """The projection tables with raw offsets renamed to delivery indexes; `seq` (the
    feed position, an arrival order across partitions) dropped."""
    index = {offset: i for i, offset in enumerate(offsets)}

    def rename(value: Any) -> Any:
        return index[value] if value is not None else None

    with sqlite3.connect(db) as conn:
        rows = {
            table: conn.execute(f"SELECT * FROM {table}").fetchall()
            for table in ("verifications", "transitions", "subject_events", "quarantine")
        }
        documents = conn.execute("SELECT * FROM documents ORDER BY subject").fetchall()
    verifications = []
    for row in rows["verifications"]:
        winner = row[16].split(",") if row[16] else None
        if winner:
            winner[-1] = str(rename(int(winner[-1])))  # the key's last part is the offset
        verifications.append(
            (*row[:13], rename(row[13]), *row[14:16], ",".join(winner or ()), *row[17:])
        )
    return {
        "verifications": sorted(verifications),
        "transitions": sorted((*r[1:11], rename(r[11]), *r[12:]) for r in rows["transitions"]),
        "subject_events": sorted(
            (rename(r[0]), *r[1:4], _rename_in(r[4], rename), *r[5:])
            for r in rows["subject_events"]
        ),
        "quarantine": sorted((rename(r[0]), *r[1:]) for r in rows["quarantine"]),
        "documents": documents,
    }
