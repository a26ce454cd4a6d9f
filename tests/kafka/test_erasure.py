"""Erasure in Kafka mode (`streams.erasure.kafka`), on the real broker with real workers:
afterwards no topic yields the subject's body values, the other subjects replay as live,
and the erased subject replays to its decision trail."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from statemachines.envelope import envelope_from_record
from streams.erasure import Request, UnknownSubject
from streams.erasure.kafka import erase
from streams.erasure.kafka_retention import retention, start_retention
from streams.kafka.keys import RecordOpener
from streams.kafka.replay import replay_from_kafka
from tests.kafka.stack import KafkaStack, raw_records
from tests.kafka.test_kafka_mode import comparable
from tests.kafka.test_sealing_helpers import (
    append_sealed,
    envelopes,
    person,
    sealed,
    settings,
    start_worker,
    topic_bytes,
)

ERASED = (b"ALDONA", b"EA000001", b"1981-02-03")
KEPT = (b"BIRUTE", b"KB000002", b"1972-04-05")
# A delivery the core cannot read that names the erased subject: quarantined, then dropped.
NAMING = ("ondato", {"Content-Type": "application/json"}, b'not json "scan-erase" ALDONA')


def opened_bodies(stack: KafkaStack, master: object) -> bytes:
    opener = RecordOpener(settings(stack), master)  # type: ignore[arg-type]
    try:
        return b"".join(e.body for e in opener.open(sorted(raw_records(stack).items())))
    finally:
        opener.close()


def wait_folded(db: Path, positions: set[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            seen = {r[0] for r in conn.execute('SELECT "offset" FROM subject_events')}
        if positions <= seen:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{sorted(positions - seen)} not folded")


def status_of(db: Path, subject: str) -> tuple[object, ...]:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT status, final, reference, erased_at FROM verifications WHERE subject = ?",
            (subject,),
        ).fetchone()
    assert row is not None, subject
    return tuple(row)


def test_an_erased_subject_is_noise_everywhere_and_replays_to_its_decision_trail(
    stack: KafkaStack, tmp_path: Path
) -> None:
    master = sealed(stack)
    sent = envelopes(
        [
            *person("scan-erase", "ALDONA", "EA000001", "1981-02-03"),
            *person("scan-keep", "BIRUTE", "KB000002", "1972-04-05"),
            NAMING,
        ]
    )
    start_worker(stack)
    stack.start_projector()
    append_sealed(stack, master, sent)
    stack.wait_projected(len(sent))
    before = status_of(stack.db, "idenfy/kyc/scan-erase")
    # Controls: sealed, no topic holds either person's values; opened, both are there.
    assert not any(v in data for data in topic_bytes(stack).values() for v in ERASED + KEPT)
    assert all(v in opened_bodies(stack, master) for v in ERASED + KEPT)
    earlier = set(raw_records(stack))

    done = erase(
        Request(("idenfy/kyc/scan-erase",)), settings=settings(stack), master=master,
        db_path=str(stack.db),
    )  # fmt: skip
    assert [(e.subject, e.deliveries, e.dropped, e.keys) for e in done] == [
        ("idenfy/kyc/scan-erase", 2, 1, 2)
    ]
    stored = raw_records(stack)
    wait_folded(stack.db, set(stored) - earlier)  # the erasure record

    # Every topic: the raw records, keys, reduced events, the changelog and the outputs.
    topics = topic_bytes(stack)
    assert {f"{stack.name}.{s}" for s in ("raw", "keys", "reduced", "status")} <= set(topics)
    assert any("changelog" in t for t in topics)
    for topic, data in topics.items():
        for value in ERASED:
            assert value not in data, (topic, value)
    opened = opened_bodies(stack, master)
    assert all(v in opened for v in KEPT) and not any(v in opened for v in ERASED)

    # The decision trail stays, the reference goes, the subject is marked erased.
    status, final, reference, erased_at = status_of(stack.db, "idenfy/kyc/scan-erase")
    assert (status, final) == before[:2] and reference is None and erased_at == done[0].erased_at
    # Replay from the topics gives what the live deployment shows, for every subject.
    rebuilt = tmp_path / "rebuilt.db"
    replay_from_kafka(settings(stack), str(rebuilt), master=master)
    positions = sorted(stored)
    assert comparable(rebuilt, positions) == comparable(stack.db, positions)

    # Again: harmless, and nothing is left to reduce or destroy.
    again = erase(
        Request(("idenfy/kyc/scan-erase",)), settings=settings(stack), master=master,
        db_path=str(stack.db),
    )  # fmt: skip
    assert [(e.deliveries, e.dropped, e.keys) for e in again] == [(0, 0, 0)]
    with pytest.raises(UnknownSubject):
        erase(
            Request(("idenfy/kyc/nobody",)), settings=settings(stack), master=master,
            db_path=str(stack.db),
        )  # fmt: skip

    # Retention reduces and shreds the other subject without erasing it: replay still
    # matches, the reference stays.
    kept = status_of(stack.db, "idenfy/kyc/scan-keep")
    due = ["idenfy/kyc/scan-keep"]
    options = {"settings": settings(stack), "master": master, "db_path": str(stack.db)}
    counted = retention(None, dry_run=True, due=due, **options)  # type: ignore[arg-type]
    assert counted == {"subjects": 1, "deliveries": 2, "keys": 1, "dry_run": True}
    assert all(v in opened_bodies(stack, master) for v in KEPT)
    retention(None, dry_run=False, due=due, **options)  # type: ignore[arg-type]
    assert not any(v in opened_bodies(stack, master) for v in KEPT)
    assert status_of(stack.db, "idenfy/kyc/scan-keep") == kept
    again_rebuilt = tmp_path / "again.db"
    replay_from_kafka(settings(stack), str(again_rebuilt), master=master)
    positions = sorted(raw_records(stack))  # the second erasure record too
    wait_folded(stack.db, set(positions) - set(stored))
    assert comparable(again_rebuilt, positions) == comparable(stack.db, positions)


def test_erasure_of_everything_keeps_no_event_and_names_the_transitions_it_wipes(
    stack: KafkaStack, tmp_path: Path
) -> None:
    master = sealed(stack)
    subject = "idenfy/kyc/scan-all"
    sent = envelopes(
        [
            *person("scan-all", "ALDONA", "EA000001", "1981-02-03"),
            *person("scan-other", "BIRUTE", "KB000002", "1972-04-05"),
        ]
    )
    start_worker(stack)
    stack.start_projector()
    own = [r.offset for r in append_sealed(stack, master, sent)][:2]
    stack.wait_projected(len(sent))
    with sqlite3.connect(stack.db) as conn:
        standing = [
            r[0]
            for r in conn.execute(
                'SELECT "offset" FROM transitions WHERE subject = ? ORDER BY seq', (subject,)
            )
        ]
    assert standing and set(standing) <= set(own)
    earlier = set(raw_records(stack))

    done = erase(
        Request((subject,), scope="all"), settings=settings(stack), master=master,
        db_path=str(stack.db),
    )  # fmt: skip
    assert [(e.deliveries, e.keys) for e in done] == [(2, 1)]
    stored = raw_records(stack)
    (at,) = set(stored) - earlier
    record = json.loads(envelope_from_record(stored[at], at).body)
    assert (record["scope"], record["wiped"]) == ("all", standing)
    # Nothing kept of its deliveries: no event, no body.
    opener = RecordOpener(settings(stack), master)
    try:
        opened = opener.open([(pos, stored[pos]) for pos in own])
    finally:
        opener.close()
    assert [(env.reduced, env.body) for env in opened] == [("", b"")] * 2
    wait_folded(stack.db, {at})
    with sqlite3.connect(stack.db) as conn:
        left = conn.execute("SELECT count(*) FROM transitions WHERE subject = ?", (subject,))
        assert left.fetchone()[0] == 0
    rebuilt = tmp_path / "rebuilt.db"
    replay_from_kafka(settings(stack), str(rebuilt), master=master)
    positions = sorted(stored)
    assert comparable(rebuilt, positions) == comparable(stack.db, positions)


def test_retention_applies_the_policy_continuously_until_stopped(stack: KafkaStack) -> None:
    """`start_retention`, as `kycflow project` runs it: the bodies of a due subject go, its
    projection stays; no policy, no thread."""
    master = sealed(stack)
    start_worker(stack)
    stack.start_projector()
    sent = envelopes(person("scan-old", "BIRUTE", "KB000002", "1972-04-05"))
    append_sealed(stack, master, sent)
    stack.wait_projected(len(sent))
    kept = status_of(stack.db, "idenfy/kyc/scan-old")
    assert start_retention(settings(stack), str(stack.db), lambda: False, stack.env) is None

    stop = threading.Event()
    policy = {"KYCFLOW_RETENTION": "last+0s", "KYCFLOW_RETENTION_INTERVAL": "0.5"}
    thread = start_retention(settings(stack), str(stack.db), stop.is_set, {**stack.env, **policy})
    assert thread is not None
    try:
        deadline = time.monotonic() + 60
        while any(v in opened_bodies(stack, master) for v in KEPT):
            assert time.monotonic() < deadline, "retention did not run"
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert status_of(stack.db, "idenfy/kyc/scan-old") == kept
