"""Erasure and retention in Kafka mode: reduce, shred, then record — in that order.

A topic cannot drop one record, so a subject's raw records stay and their data keys go
(crypto-shredding, `ingest.kafka_keys`). For each subject, with acknowledged produces:

1. **reduce**: every delivery of the subject — the positions the projections list in
   `subject_events`, and any later record keyed by the subject that the projector has not
   reached — is opened and its canonical event (`normalise.reduced_form`) produced to
   `PREFIX.reduced` keyed by its position; quarantined deliveries that name the subject
   (its id or reference, JSON-quoted, in the body) get "" (nothing kept);
2. **shred**: every key id of the subject (and of those quarantined deliveries) is
   tombstoned in `PREFIX.keys`;
3. **record**: the erasure record (`statemachines.reduced.erase_record`) is produced to
   `PREFIX.raw` keyed by the subject, so it reaches the subject's partition and worker.

Why this order is safe. Readers prefer a body while its key exists, so after a crash in
step 1 everything reads as before (the old state). Reduced events exist before any key
goes, so a reader that finds a key gone always finds the event kept for it. A crash after
step 2 leaves the bodies unreadable and their events kept, but the subject not yet marked
erased: the command failed (non-zero exit, 5xx) and running it again completes it — steps 1
and 2 find nothing left to do (records already read as reduced, no keys), step 3 is
produced. Recording last means the log never claims an erasure that did not happen.
Running a finished erasure again appends one more erasure record, which the fold applies
as it applied the first.

Retention does steps 1 and 2 for the subjects its policy finds due, keeping references,
with no erasure record: the subject is not erased, its old bodies are.

Not covered: records written in the clear (`KYCFLOW_ENCRYPTION=off`) cannot be removed from
the raw topic; they are reduced (the fold reads the kept event) but their bytes stay.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from ingest.kafka_keys import key_record_key, reduced_record
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope, envelope_to_json
from statemachines.normalise import reduced_form
from statemachines.reduced import CONTROL, erase_record
from statemachines.routing import PARTITION_STRIDE, coordinate, position
from streams.erasure import Erased, Request, UnknownSubject
from streams.erasure.embedded import Facts, facts_of, now_iso
from streams.kafka.config import KafkaSettings
from streams.kafka.keys import RecordOpener

log = logging.getLogger("kycflow.erasure")
ACK_TIMEOUT = 30.0  # seconds to wait for the broker to acknowledge each step


class DuePolicy(Protocol):
    """What retention needs of a policy (streams.erasure.retention)."""

    def due_subjects(self, db_path: str) -> Sequence[str]: ...


@dataclass
class Plan:
    """The records one subject's reduction touches, opened."""

    subject: str
    deliveries: list[RawEnvelope] = field(default_factory=list)  # not yet reduced
    reduced: int = 0  # deliveries already reduced by an earlier run
    dropped: list[RawEnvelope] = field(default_factory=list)  # quarantined, naming it
    key_ids: dict[str, set[str]] = field(default_factory=dict)  # key subject -> key ids

    @property
    def keys(self) -> int:
        return sum(len(ids) for ids in self.key_ids.values())


def erase(
    request: Request, *, settings: KafkaSettings, master: MasterKeys | None, db_path: str
) -> list[Erased]:
    """Erase `request.subjects` (see the module docstring); UnknownSubject, before anything
    is produced, when one has no delivery and no data key."""
    with _session(settings, master) as session:
        plans = [session.plan(facts_of(db_path, s), db_path) for s in request.subjects]
        for made in plans:
            if not (made.deliveries or made.reduced or made.keys):
                raise UnknownSubject(made.subject)
        results = []
        for made in plans:
            session.reduce(made, keep_reference=request.keep_reference)
            session.shred(made)
            at = now_iso()
            session.record(
                made.subject,
                erase_record(
                    made.subject,
                    scope=request.scope,
                    keep_reference=request.keep_reference,
                    by=request.by,
                    received_at=at,
                    dropped=tuple(env.offset for env in made.dropped),
                ),
            )
            results.append(
                Erased(made.subject, at, len(made.deliveries), len(made.dropped), made.keys)
            )
            log.info("erased %s: %d deliveries reduced, %d keys", made.subject, *_counts(made))
    return results


def retention(
    policy: DuePolicy | None,
    *,
    settings: KafkaSettings,
    master: MasterKeys | None,
    db_path: str,
    dry_run: bool,
    due: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Reduce and shred the subjects `due` (else those `policy.due_subjects(db_path)` names),
    keeping their references and not marking them erased; with `dry_run`, only count."""
    subjects = list(due if due is not None else policy.due_subjects(db_path) if policy else ())
    counts = {"subjects": 0, "deliveries": 0, "keys": 0, "dry_run": dry_run}
    with _session(settings, master) as session:
        for subject in subjects:
            made = session.plan(facts_of(db_path, subject), db_path, quarantine=False)
            if not (made.deliveries or made.keys):
                continue  # nothing of it left to reduce
            counts["subjects"] += 1
            counts["deliveries"] += len(made.deliveries)
            counts["keys"] += made.keys
            if not dry_run:
                session.reduce(made, keep_reference=True)
                session.shred(made)
    return counts


def _counts(made: Plan) -> tuple[int, int]:
    return len(made.deliveries), made.keys


@contextmanager
def _session(settings: KafkaSettings, master: MasterKeys | None) -> Iterator[_Session]:
    session = _Session(settings, master)
    try:
        yield session
    finally:
        session.close()


class _Session:
    def __init__(self, settings: KafkaSettings, master: MasterKeys | None) -> None:
        self.settings = settings
        self.opener = RecordOpener(settings, master)
        self.opener.refresh()
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.servers,
            client_id="kycflow-erase",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        self.producer = KafkaProducer(
            bootstrap_servers=settings.servers,
            client_id="kycflow-erase",
            acks="all",
            max_request_size=settings.raw_record_limit,
        )

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()
        self.opener.close()

    # -- finding a subject's records ------------------------------------------------------

    def plan(self, facts: Facts, db_path: str, *, quarantine: bool = True) -> Plan:
        made = Plan(facts.subject)
        positions = set(facts.offsets) | self._unprojected(facts.subject, db_path)
        for env in self._open(sorted(positions)):
            if env.provider == CONTROL:
                continue
            if env.reduced is None:
                made.deliveries.append(env)
            else:
                made.reduced += 1
        if quarantine and facts.needles:
            for env in self._open(_quarantined(db_path)):
                if env.reduced is None and any(n in env.body for n in facts.needles):
                    made.dropped.append(env)
        for subject in {facts.subject, *(env.dedup_key for env in made.dropped)}:
            if ids := self.opener.keyring.key_ids(subject):
                made.key_ids[subject] = ids
        return made

    def _unprojected(self, subject: str, db_path: str) -> set[int]:
        """Positions of records keyed by `subject` past what the projector has seen."""
        key = subject.encode("utf-8", "surrogatepass")
        topic = self.settings.topic("raw")
        partitions = sorted(self.consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return set()
        # The producers' default partitioner (murmur2, as every Kafka client's).
        partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
        start = _projected_upto(db_path, partition) + 1
        return {pos for pos, k, _ in self._scan(topic, partition, start) if k == key}

    def _open(self, positions: Sequence[int]) -> list[RawEnvelope]:
        values = self._read(positions)
        return self.opener.open([(pos, values[pos]) for pos in positions if pos in values])

    def _read(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The raw values at these positions: one sequential read per partition."""
        by_partition: dict[int, list[int]] = {}
        for pos in positions:
            partition, offset = coordinate(pos)
            by_partition.setdefault(partition, []).append(offset)
        wanted, found = set(positions), {}
        topic = self.settings.topic("raw")
        for partition, offsets in by_partition.items():
            for pos, _, value in self._scan(topic, partition, min(offsets), max(offsets) + 1):
                if pos in wanted:
                    found[pos] = value
        return found

    def _scan(
        self, topic: str, partition: int, start: int, end: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(position, key, value) of records [start, end) of a partition (end: its end now)."""
        tp = TopicPartition(topic, partition)
        self.consumer.assign([tp])
        stop = self.consumer.end_offsets([tp])[tp] if end is None else end
        self.consumer.seek(tp, start)
        while self.consumer.position(tp) < stop:
            for message in self.consumer.poll(timeout_ms=500).get(tp, []):
                if message.offset < stop:
                    yield position(partition, message.offset), message.key, message.value

    # -- the three steps ------------------------------------------------------------------

    def reduce(self, made: Plan, *, keep_reference: bool) -> None:
        records = [
            reduced_record(env.offset, reduced_form(env, keep_reference=keep_reference))
            for env in made.deliveries
        ]
        records += [reduced_record(env.offset, "") for env in made.dropped]
        self._produce(self.settings.topic("reduced"), records)

    def shred(self, made: Plan) -> None:
        tombstones = [
            (key_record_key(subject, key_id), None)
            for subject, ids in made.key_ids.items()
            for key_id in sorted(ids)
        ]
        self._produce(self.settings.topic("keys"), tombstones)

    def record(self, subject: str, env: RawEnvelope) -> None:
        # Keyed by the subject, not by `routing_key` (which keys what no subject claims by
        # its dedup key): the record must reach the subject's partition, after its events.
        key = subject.encode("utf-8", "surrogatepass")
        self._produce(self.settings.topic("raw"), [(key, envelope_to_json(env))])

    def _produce(self, topic: str, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        sent = [self.producer.send(topic, key=key, value=value) for key, value in records]
        self.producer.flush(timeout=ACK_TIMEOUT)
        for future in sent:
            future.get(timeout=ACK_TIMEOUT)  # raises unless the broker acknowledged it


def _quarantined(db_path: str) -> list[int]:
    with _projections(db_path) as db:
        if db is None:
            return []
        return [int(r[0]) for r in db.execute('SELECT "offset" FROM quarantine')]


def _projected_upto(db_path: str, partition: int) -> int:
    """The last offset of a raw partition the projections hold a row for (-1: none)."""
    low, high = partition * PARTITION_STRIDE, (partition + 1) * PARTITION_STRIDE - 1
    with _projections(db_path) as db:
        if db is None:
            return -1
        row = db.execute(
            'SELECT max(m) FROM (SELECT max("offset") AS m FROM subject_events '
            'WHERE "offset" BETWEEN ? AND ? UNION ALL SELECT max("offset") FROM quarantine '
            'WHERE "offset" BETWEEN ? AND ?)',
            (low, high, low, high),
        ).fetchone()
    return -1 if row[0] is None else coordinate(int(row[0]))[1]


@contextmanager
def _projections(db_path: str) -> Iterator[sqlite3.Connection | None]:
    if not Path(db_path).is_file():
        yield None
        return
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("PRAGMA busy_timeout=5000")
        try:
            db.execute("SELECT 1 FROM subject_events LIMIT 1")
        except sqlite3.OperationalError:
            yield None
            return
        yield db
