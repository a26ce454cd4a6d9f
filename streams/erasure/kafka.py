"""Erasure and retention in Kafka mode: reduce, wait, shred, then record — in that order.

A topic cannot drop one record, so a subject's raw records stay and their data keys go
(crypto-shredding, `ingest.kafka_keys`). For each subject, with acknowledged produces:

1. **reduce**: the subject's data keys are listed (`PREFIX.keys`, read to its end) with when
   a worker made each; every delivery of the subject — the positions the projections list
   in `subject_events`, and any later record keyed by the subject that the projector has not
   reached — sealed under a listed key (or in the clear) is opened and its canonical event
   (`normalise.reduced_form`; "" for scope "all") produced to `PREFIX.reduced` keyed by its
   position; quarantined deliveries that name the subject (its id or reference, JSON-quoted,
   in the body) get "" (nothing kept);
2. **wait** until every listed key is older than `settle_after` = KEY_REUSE + the produce
   timeout + CLOCK_SKEW, then reduce **again** every record under a listed key that arrived
   since step 1 read its partition;
3. **shred**: the listed key ids — only those — are tombstoned in `PREFIX.keys`;
4. **record**: the erasure record (`statemachines.reduced.erase_record`) is produced to
   `PREFIX.raw` keyed by the subject, so it reaches the subject's partition and worker.

Why nothing accepted is lost. An HTTP worker keeps sealing a subject's deliveries under a
key for KEY_REUSE seconds after making it (`ingest.kafka_log`), and answers 202 only once
the record is acknowledged, within its produce timeout; the key record says when it was
made (the worker's clock, hence the margin for clocks). So once a key is older than
`settle_after`, no worker seals under it any more and every delivery accepted under it is
in the raw topic: step 2 reads them all, and each has its event kept before its key goes.
A delivery under that key that was *not* acknowledged in time was answered 503 (the
provider retries it, under a new key) — it may land later and read as nothing, but it was
never accepted. Keys made after step 1 listed them (a webhook accepted after the erasure
began) are new data: not listed, not destroyed. The wait is skipped when every key is old
already — the common case, a subject erased long after its last delivery; at worst an
erasure takes `settle_after` (15 s with the defaults) more than its reads and writes.

Why this order is safe. Readers prefer a body while its key exists, so after a crash in
steps 1-2 everything reads as before (the old state). Reduced events exist before any key
goes, so a reader that finds a key gone always finds the event kept for it. A crash after
step 3 leaves the bodies unreadable and their events kept, but the subject not yet marked
erased: the command failed and running it again completes it — steps 1-3 find nothing
left to do (records already read as reduced, no keys; or only the keys a crash in step 3
left, which it reduces under and destroys), step 4 is produced. A broker that fails or
stops answering midway is such a crash: the command ends with `Incomplete`, naming the
step (the CLI says to run it again, exit 1; the API answers 503). Recording last means
the log never claims an erasure that did not happen. Running a finished erasure again
appends one more erasure record, which the fold applies as it applied the first. Scope
"all" also lists in the record the positions of the subject's standing transitions
(`wiped`, for replay's feed numbering), folded from its records just before the record is
produced; a delivery landing in those few milliseconds is the one thing it can miss.

Retention (`streams.erasure.kafka_retention`) does steps 1-3 for the subjects its policy
finds due, keeping references, with no erasure record: the subject is not erased, its old
bodies are.

Last, each erasure request and each retention run that reduced something appends one
entry to the audit trail (`streams.erasure.audit`, `PREFIX.audit`, made sure of before
step 1). If that fails the command fails (AuditFailed names the entry); the loop keeps the
entry and writes it before its next run.

Not covered: records written in the clear (`KYCFLOW_ENCRYPTION=off`) cannot be removed from
the raw topic; they are reduced but their bytes stay.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from ingest.kafka_keys import KEY_REUSE, key_record_key, reduced_record, sealed_key
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope, envelope_to_json
from statemachines.normalise import reduced_form
from statemachines.process import standing_transitions
from statemachines.reduced import CONTROL
from statemachines.routing import PARTITION_STRIDE, coordinate, position
from streams.config import KycflowError
from streams.erasure import Erased, Request, UnknownSubject, audit, record_of
from streams.erasure.embedded import Facts, facts_of, now_iso
from streams.kafka.config import KafkaSettings, ensure_topics
from streams.kafka.keys import RecordOpener

log = logging.getLogger("kycflow.erasure")
ACK_TIMEOUT = 30.0  # seconds to wait for the broker to acknowledge each step, or to answer
# Seconds the clocks of the ingest hosts (which stamp a key's `created`) and of the host
# running the erasure may disagree by.
CLOCK_SKEW = 5.0
CLOSE_MARGIN = 2.0  # seconds past ACK_TIMEOUT a failed session's producer may take to close


def settle_after(settings: KafkaSettings) -> float:
    """Seconds after a data key was made past which no delivery sealed under it can still
    be accepted (the module docstring says why)."""
    return KEY_REUSE + settings.produce_timeout + CLOCK_SKEW


class Incomplete(KycflowError):
    """The broker failed, or stopped answering, before the work was done: what was done is
    safe to keep (the module docstring says why) and running the same request again
    completes it. The message names the step and the broker, never a subject's data."""

    def __init__(self, what: str, bootstrap: str, step: str, exc: BaseException) -> None:
        self.step = step
        reason = str(exc) if isinstance(exc, KafkaError) else f"{type(exc).__name__}: {exc}"
        super().__init__(
            f"{what} not completed: Kafka at {bootstrap} failed while {step} ({reason}); "
            "run it again to complete it"
        )


class Opened(NamedTuple):
    env: RawEnvelope
    key_id: str | None  # the data key it is sealed under; None in the clear
    owner: str  # the record key: the subject (or dedup key) its data keys belong to


@dataclass
class Plan:
    """The records one subject's reduction touches, opened."""

    subject: str
    records: list[RawEnvelope] = field(default_factory=list)  # keyed by it, controls too
    deliveries: list[RawEnvelope] = field(default_factory=list)  # to reduce
    kept: list[RawEnvelope] = field(default_factory=list)  # reduced earlier, event kept
    reduced: int = 0  # deliveries already reduced by an earlier run
    dropped: list[RawEnvelope] = field(default_factory=list)  # quarantined, naming it
    key_ids: dict[str, set[str]] = field(default_factory=dict)  # key owner -> listed key ids
    since: dict[int, int] = field(default_factory=dict)  # partition -> first unprojected
    seen: set[int] = field(default_factory=set)  # positions planned

    @property
    def keys(self) -> int:
        return sum(len(ids) for ids in self.key_ids.values())


def erase(
    request: Request, *, settings: KafkaSettings, master: MasterKeys | None, db_path: str
) -> list[Erased]:
    """Erase `request.subjects` (see the module docstring); UnknownSubject, before anything
    is produced, when one has no delivery and no data key."""
    wipe = request.scope == "all"
    with session_of(settings, master, "erasure") as session:
        plans = [session.plan(facts_of(db_path, s), db_path) for s in request.subjects]
        for made in plans:
            if not (made.deliveries or made.reduced or made.keys):
                raise UnknownSubject(made.subject)
        session.topics()  # the audit topic, before anything is done
        keep = request.keep_reference
        for made in plans:
            now = made.deliveries + (made.kept if wipe else [])
            session.reduce(now, made.dropped, keep_reference=keep, wipe=wipe)
        session.settle(plans)
        results = []
        for made in plans:
            session.reduce(*session.catch_up(made), keep_reference=keep, wipe=wipe)
            session.shred(made)
            at = now_iso()
            session.record(made.subject, _erasure(made, request, at))
            reduced = len(made.deliveries) + (len(made.kept) if wipe else 0)
            results.append(Erased(made.subject, at, reduced, len(made.dropped), made.keys))
            log.info("erased %s: %d deliveries reduced, %d keys", made.subject, reduced, made.keys)
        deliveries = sum(one.deliveries + one.dropped for one in results)
        keys = sum(one.keys for one in results)
        session.audit("erase", request.by, request.subjects, deliveries, keys)
    return results


def _erasure(made: Plan, request: Request, at: str) -> RawEnvelope:
    everything = request.scope == "all"
    wiped = standing_transitions(sorted(made.records, key=_offset)) if everything else ()
    dropped = tuple(env.offset for env in made.dropped)
    return record_of(request, made.subject, at, dropped=dropped, wiped=wiped)


def _offset(env: RawEnvelope) -> int:
    return env.offset


@contextmanager
def session_of(settings: KafkaSettings, master: MasterKeys | None, what: str) -> Iterator[_Session]:
    """A session whose broker failures end as `Incomplete` (naming `what` and the step);
    its clients are closed either way."""
    session = None
    try:
        session = _Session(settings, master)
        yield session
    except (KafkaError, TimeoutError) as exc:  # AuditFailed and UnknownSubject pass
        step = session.step if session is not None else "connecting and reading the data keys"
        raise Incomplete(what, settings.bootstrap, step, exc) from exc
    finally:
        if session is not None:
            session.close()


class _Session:
    def __init__(self, settings: KafkaSettings, master: MasterKeys | None) -> None:
        self.settings = settings
        self.raw = settings.topic("raw")
        timeout_ms = int(ACK_TIMEOUT * 1000)  # a broker that stops answering: bounded waits
        with ExitStack() as built:  # a failure closes the clients made so far
            self.opener = RecordOpener(settings, master)
            built.callback(self.opener.close)
            self.opener.refresh()  # the keys as of now: those listed are the ones destroyed
            self.consumer = KafkaConsumer(
                bootstrap_servers=settings.servers,
                client_id="kycflow-erase",
                enable_auto_commit=False,
                fetch_max_wait_ms=50,
                request_timeout_ms=timeout_ms,
            )
            built.callback(self.consumer.close)
            self.producer = KafkaProducer(
                bootstrap_servers=settings.servers,
                client_id="kycflow-erase",
                acks="all",
                max_request_size=settings.raw_record_limit,
                max_block_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                # A record the broker did not take expires soon after its step gave up on
                # it, so closing a failed session does not wait minutes (or fail).
                delivery_timeout_ms=timeout_ms + 1000,
            )
            built.callback(self._close_producer)
            self.partitions: list[int] = sorted(self.consumer.partitions_for_topic(self.raw) or ())
            built.pop_all()
        self.step = "reading the subjects' records"  # what it does now, for `Incomplete`

    def close(self) -> None:
        self._close_producer()
        self.consumer.close()
        self.opener.close()

    def _close_producer(self) -> None:
        """At once after a success (every send was awaited); after a failure, once the
        records the broker did not take have expired (they are dropped: the step failed)."""
        with suppress(KafkaError):
            self.producer.close(timeout=ACK_TIMEOUT + CLOSE_MARGIN)

    def topics(self) -> None:
        self.step = "creating kycflow's topics"
        ensure_topics(self.settings, timeout=ACK_TIMEOUT)

    # -- finding a subject's records ------------------------------------------------------

    def plan(self, facts: Facts, db_path: str, *, quarantine: bool = True) -> Plan:
        self.step = "reading the subjects' records"
        made = Plan(facts.subject)
        made.key_ids[facts.subject] = self.opener.keyring.key_ids(facts.subject)
        positions = set(facts.offsets)
        if (partition := self._partition(facts.subject)) is not None:
            made.since[partition] = _projected_upto(db_path, partition) + 1
            positions |= self._keyed(partition, made.since[partition], {facts.subject})
        for found in self._open(sorted(positions)):
            self._take(made, found)
        if quarantine and facts.needles:
            for found in self._open(_quarantined(db_path)):
                if found.env.reduced is None and any(n in found.env.body for n in facts.needles):
                    self._take_dropped(made, found, db_path)
        return made

    def _take(self, made: Plan, found: Opened) -> None:
        """A record keyed by the subject: reduced now if sealed under a listed key."""
        env = found.env
        made.seen.add(env.offset)
        made.records.append(env)
        if env.provider == CONTROL:
            return
        if env.reduced is not None:
            made.reduced += 1
            if env.reduced:
                made.kept.append(env)
        elif found.key_id is None or found.key_id in made.key_ids.get(found.owner, ()):
            made.deliveries.append(env)
        # else: under a key made after the listing — new data, left alone

    def _take_dropped(self, made: Plan, found: Opened, db_path: str) -> None:
        made.seen.add(found.env.offset)
        made.dropped.append(found.env)
        if found.owner not in made.key_ids:
            made.key_ids[found.owner] = self.opener.keyring.key_ids(found.owner)
            partition = self._partition(found.owner)
            if partition is not None and partition not in made.since:
                made.since[partition] = _projected_upto(db_path, partition) + 1

    def _partition(self, owner: str) -> int | None:
        """The raw partition of a record key: the producers' default partitioner (murmur2,
        as every Kafka client's)."""
        if not self.partitions:
            return None
        key = owner.encode("utf-8", "surrogatepass")
        return self.partitions[(int(murmur2(key)) & 0x7FFFFFFF) % len(self.partitions)]

    def _keyed(self, partition: int, start: int, owners: set[str]) -> set[int]:
        keys = {owner.encode("utf-8", "surrogatepass") for owner in owners}
        return {pos for pos, key, _ in self._scan(partition, start) if key in keys}

    def _open(self, positions: Sequence[int]) -> list[Opened]:
        return self._opened(list(self._read(positions).items()))

    def _opened(self, found: list[tuple[int, tuple[bytes, bytes]]]) -> list[Opened]:
        envelopes = self.opener.open([(pos, value) for pos, (_, value) in found])
        return [
            Opened(env, sealed_key(value), key.decode("utf-8", "surrogatepass"))
            for env, (_, (key, value)) in zip(envelopes, found, strict=True)
        ]

    def _read(self, positions: Sequence[int]) -> dict[int, tuple[bytes, bytes]]:
        """The raw (key, value) at these positions: one sequential read per partition."""
        by_partition: dict[int, list[int]] = {}
        for pos in positions:
            partition, offset = coordinate(pos)
            by_partition.setdefault(partition, []).append(offset)
        wanted, found = set(positions), {}
        for partition, offsets in by_partition.items():
            for pos, key, value in self._scan(partition, min(offsets), max(offsets) + 1):
                if pos in wanted:
                    found[pos] = (key, value)
        return dict(sorted(found.items()))

    def _scan(
        self, partition: int, start: int, end: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(position, key, value) of raw records [start, end) of a partition (end: its end
        now)."""
        tp = TopicPartition(self.raw, partition)
        self.consumer.assign([tp])
        stop = self.consumer.end_offsets([tp])[tp] if end is None else end
        self.consumer.seek(tp, start)
        quiet_since = time.monotonic()
        while self.consumer.position(tp) < stop:
            messages = self.consumer.poll(timeout_ms=500).get(tp, [])
            if messages:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > ACK_TIMEOUT:  # else a gone broker: forever
                raise TimeoutError(f"no record of {self.raw} in {ACK_TIMEOUT:g} s")
            for message in messages:
                if message.offset < stop:
                    yield position(partition, message.offset), message.key, message.value

    # -- the steps ------------------------------------------------------------------------

    def settle(self, plans: Sequence[Plan]) -> None:
        """Wait until every listed key is past `settle_after` (step 2)."""
        self.step = "waiting for the data keys to settle"
        now, bound = time.time(), settle_after(self.settings)
        created = self.opener.keyring.created
        # A `created` ahead of this clock was made no later than now: wait from now.
        until = max(
            (min(created.get(k, now), now) + bound
             for made in plans for ids in made.key_ids.values() for k in ids),
            default=now,
        )  # fmt: skip
        if until > now:
            log.info("waiting %.1f s until no ingest worker seals under the keys", until - now)
            time.sleep(until - now)

    def catch_up(self, made: Plan) -> tuple[list[RawEnvelope], list[RawEnvelope]]:
        """Records under a listed key that arrived since the plan read (deliveries of the
        subject, and copies of its dropped ones), taken into `made`; also the subject's
        other new records, for `wiped`. Returns (deliveries, dropped) to reduce."""
        self.step = "reading the records that arrived meanwhile"
        deliveries, dropped = len(made.deliveries), len(made.dropped)
        for partition, start in sorted(made.since.items()):
            owners = {o for o in made.key_ids if self._partition(o) == partition}
            keys = {o.encode("utf-8", "surrogatepass") for o in owners}
            late = [
                (pos, (key, value))
                for pos, key, value in self._scan(partition, start)
                if key in keys and pos not in made.seen
            ]
            for found in self._opened(late):
                if found.owner == made.subject:
                    self._take(made, found)
                elif (
                    found.key_id in made.key_ids.get(found.owner, ()) and found.env.reduced is None
                ):
                    made.seen.add(found.env.offset)
                    made.dropped.append(found.env)  # a copy (same dedup key) of a dropped one
        return made.deliveries[deliveries:], made.dropped[dropped:]

    def reduce(
        self,
        deliveries: Sequence[RawEnvelope],
        dropped: Sequence[RawEnvelope],
        *,
        keep_reference: bool,
        wipe: bool = False,
    ) -> None:
        """Keep each delivery's event ("" with `wipe`: scope "all" keeps none)."""
        self.step = "keeping the deliveries' events"
        records = [
            reduced_record(
                env.offset, "" if wipe else reduced_form(env, keep_reference=keep_reference)
            )
            for env in deliveries
        ]
        records += [reduced_record(env.offset, "") for env in dropped]
        self._produce(self.settings.topic("reduced"), records)

    def shred(self, made: Plan) -> None:
        self.step = "destroying the data keys"
        tombstones = [
            (key_record_key(owner, key_id), None)
            for owner, ids in made.key_ids.items()
            for key_id in sorted(ids)
        ]
        self._produce(self.settings.topic("keys"), tombstones)

    def record(self, subject: str, env: RawEnvelope) -> None:
        # Keyed by the subject, not by `routing_key` (which keys what no subject claims by
        # its dedup key): the record must reach the subject's partition, after its events.
        self.step = "recording the erasure"
        key = subject.encode("utf-8", "surrogatepass")
        self._produce(self.raw, [(key, envelope_to_json(env))])

    def audit(
        self, action: str, by: str, subjects: Sequence[str], deliveries: int, keys: int
    ) -> None:
        entry = audit.Entry(now_iso(), action, by, tuple(subjects), deliveries, keys)
        audit.produce(self.producer, self.settings, entry)

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
