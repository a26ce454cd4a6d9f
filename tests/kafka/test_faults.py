"""Kafka mode under faults: a worker killed mid-stream, a broker that hangs or dies.

What must hold (design.md §5.7): no status lost, no effect doubled in the projections,
and never a 2xx for a webhook the broker did not acknowledge.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

from statemachines.envelope import RawEnvelope, envelope_from_record
from statemachines.process import replay
from tests import payloads as p
from tests.kafka.stack import Broker, KafkaStack, append_to_kafka, raw_records
from tests.kafka.test_kafka_mode import comparable
from tests.payloads import Webhook


def many_verifications(count: int) -> list[Webhook]:
    """`count` iDenfy verifications (preliminary, then manual), with some repeats."""
    sent: list[Webhook] = []
    for i in range(count):
        scan = f"scan-{i:05d}"
        auto = p.idenfy_identification(
            "IDENTIFICATION_AUTO_FINISHED", scan, final=False, overall="REVIEWING"
        )
        manual = p.idenfy_identification(
            "IDENTIFICATION_MANUAL_FINISHED", scan, overall="DENIED" if i % 3 else "APPROVED"
        )
        sent += [manual, auto] if i % 2 else [auto, manual]
        if i % 5 == 0:
            sent.append(auto)  # a provider retry
    return sent


def produce(stack: KafkaStack, webhooks: list[Webhook]) -> list[int]:
    """Append through ingest's own Kafka appender, as the HTTP workers do."""
    envelopes = [
        RawEnvelope.receive(provider, body, headers, f"2026-11-22T12:{i // 60 % 60:02d}:00Z")
        for i, (provider, headers, body) in enumerate(webhooks)
    ]
    return [receipt.offset for receipt in append_to_kafka(stack, envelopes)]


PROJECTED = "(SELECT count(*) FROM subject_events) + (SELECT count(*) FROM quarantine)"


def projected(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(f"SELECT {PROJECTED}").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_worker_killed_mid_stream_loses_no_status_and_doubles_no_effect(
    stack: KafkaStack, tmp_path: Path
) -> None:
    webhooks = many_verifications(1500)
    positions = produce(stack, webhooks)
    stack.start_projector()
    first = stack.start_worker()
    deadline = time.monotonic() + 60
    while projected(stack.db) < len(webhooks) // 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert projected(stack.db) < len(webhooks), "killed mid-stream, not after the end"
    stack.kill(first, signal.SIGKILL)
    stack.start_worker()
    stack.wait_projected(len(webhooks), timeout=120)
    time.sleep(1.0)  # any late repeat of a refolded batch lands now, and must change nothing
    # Exactly the reference fold of the raw topic: every status, no doubled transition.
    stored = raw_records(stack)
    reference = replay([envelope_from_record(stored[pos], pos) for pos in sorted(positions)])
    with sqlite3.connect(stack.db) as db:
        rows = dict(db.execute("SELECT subject, version FROM verifications").fetchall())
        transitions = db.execute("SELECT count(*) FROM transitions").fetchone()[0]
        events = db.execute("SELECT count(*) FROM subject_events").fetchone()[0]
    assert rows == {key: state.version for key, state in reference.items()}
    assert events == len(webhooks)
    rebuilt = tmp_path / "rebuilt.db"
    assert stack.run("replay", "--from-kafka", "--to", str(rebuilt)).returncode == 0
    assert comparable(stack.db, positions) == comparable(rebuilt, positions)
    assert transitions == 2 * 1500 - sum(1 for i in range(1500) if i % 2)  # late autos: none


def test_a_hung_or_dead_broker_gets_503_never_a_2xx_for_an_unwritten_webhook(
    tmp_path: Path,
) -> None:
    broker = Broker().start()
    stack = KafkaStack(broker, tmp_path)
    try:
        service = stack.serve()
        answers: list[tuple[float, int, str]] = []  # (sent at, status, event id)
        stop = threading.Event()

        def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                event_id = f"evt-{n}-{i}"
                started = time.monotonic()
                status, _ = service.send(p.idwise("Finished Step", event_id=event_id))
                answers.append((started, status, event_id))
                i += 1

        clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)  # hung: nothing acknowledged
        time.sleep(3.0)  # > KYCFLOW_KAFKA_PRODUCE_TIMEOUT (2 s)
        broker.process.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        stop.set()
        for thread in clients:
            thread.join()
        statuses = {status for _, status, _ in answers}
        assert statuses == {202, 503}, statuses
        # Every 202 is in the raw topic; a 503 may be there too (written, ack lost).
        stored = {envelope_from_record(v, pos).dedup_key for pos, v in raw_records(stack).items()}
        accepted = {f"idwise:event:{e}" for _, status, e in answers if status == 202}
        assert accepted <= stored
        # Dead: every request answers 503, health stays green, and it recovers.
        broker.stop()
        for i in range(5):
            started = time.monotonic()
            status, answer = service.send(p.idwise("Finished Step", event_id=f"dead-{i}"))
            assert status == 503, answer
            assert time.monotonic() - started < 2 * 2 + 1.5, "bounded by the produce timeout"
        assert service.get("/healthz")[0] == 200
        broker.start()  # same port, empty memory storage
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if service.send(p.idwise("Finished Step", event_id="back"))[0] == 202:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("ingest did not recover when the broker came back")
    finally:
        stack.stop()
        broker.stop()


def test_records_the_consumer_skipped_are_read_and_folded(stack: KafkaStack) -> None:
    """Faust was seen skipping offsets when started on a backlog. Simulated by moving
    the group's committed offsets past unfolded records: the worker must notice the gap
    (its stored next offset is behind) and fold the skipped records itself."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    webhooks = many_verifications(60)
    positions = produce(stack, webhooks)
    topic = f"{stack.name}.raw"
    consumer = KafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap,
        group_id=stack.name,
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        max_poll_interval_ms=3000,
    )
    ends: dict[int, int] = {}
    for pos in positions:
        partition, offset = divmod(pos, 10**12)
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    skipped = {p: end // 2 for p, end in ends.items()}  # the first half of each partition
    consumer.commit(
        {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in skipped.items()}
    )
    consumer.close()
    stack.start_projector()
    stack.start_worker()
    stack.wait_projected(len(webhooks))
    with sqlite3.connect(stack.db) as db:
        folded = {row[0] for row in db.execute('SELECT "offset" FROM subject_events')}
    assert folded == set(positions)
    log = next(stack.root.glob("*.worker0.log")).read_text()
    assert "re-read" in log and sum(skipped.values()) > 0
