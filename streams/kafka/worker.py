"""`kycflow worker`: the Faust app that folds `kycflow.raw` into the output topics.

One agent consumes the raw topic (keyed by subject, so each subject's events reach one
worker in log order), runs the same `step` as the embedded processor, keeps subject
states in a changelog-backed Faust table and publishes:
`kycflow.status` (the subject's state after every change, keyed by subject),
`kycflow.transitions`, `kycflow.annotations` (why an event changed nothing) and
`kycflow.quarantine` (what the core could not read, with the reason).

At-least-once, with outputs that are safe to repeat (faust's exactly-once mode has open
bugs around rebalances; the projector absorbs repeats). Per batch the order of durable
writes is what makes a crash harmless anywhere:
1. outputs, awaited until the broker acknowledged them;
2. subject states (table changelog), flushed;
3. the partition's next raw offset (the same table, after the states, alone in its batch).
A restart that refolds an event whose outputs are out but whose state is not gets the same
outputs again; one whose state is out skips it by the stored offset (step 3), or at worst
sees it as a duplicate, which the projector never lets overwrite the real effect.
The stored offset also catches a consumer that skips records (seen with Faust on a
backlog, docs/kafka-mode-notes.md): the missing range is fetched directly and folded.
The cause of those skips is fixed in `transport`; `watchdog` re-seeks (or, failing that,
restarts) a worker whose partitions stop progressing, and publishes lag and health.

Raw records sealed at ingest are opened with the master key (`streams.kafka.keys`); one
whose data key was destroyed by an erasure folds as the event kept for it, or nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import faust
import pydantic_core
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.serializers import codecs

from ingest.sealing import MasterKeys
from statemachines.codec import (
    ANNOTATIONS,
    QUARANTINE,
    STATUS,
    TRANSITIONS,
    output_records,
    state_from_dict,
    state_to_dict,
)
from statemachines.envelope import RawEnvelope
from statemachines.fold import SubjectState
from statemachines.process import step
from statemachines.routing import coordinate, position
from streams.config import db_path, load_config
from streams.kafka.config import KafkaSettings, ensure_topics
from streams.kafka.keys import RecordOpener, check_master, master_from_env
from streams.kafka.outputs import OutputProducer
from streams.kafka.status import start_status
from streams.kafka.transport import Transport
from streams.kafka.watchdog import EXIT_STALLED, Watchdog

log = logging.getLogger("kycflow.worker")
POSITION = "\x00next-offset/"  # table key prefix of a partition's next raw offset


class StateCodec(codecs.Codec):
    """Table values: subject states, or a partition's next offset (an int)."""

    def _dumps(self, obj: Any) -> bytes:
        return pydantic_core.to_json(state_to_dict(obj) if isinstance(obj, SubjectState) else obj)

    def _loads(self, s: bytes) -> Any:
        data = pydantic_core.from_json(s)
        return state_from_dict(data) if isinstance(data, dict) else data


codecs.register("kycflow_state", StateCodec())


def app_settings(settings: KafkaSettings) -> dict[str, Any]:
    """The Faust app's configuration (also the naive baseline's, so the benchmark is fair)."""
    return {
        "broker": [f"kafka://{server}" for server in settings.servers],
        "store": "memory://",
        # Faust makes a data directory even for in-memory tables; by default in the working
        # directory, which litters a checkout (or a container's app dir) with `ID-data/`.
        "datadir": f"{tempfile.gettempdir()}/kycflow-faust-{{conf.id}}",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": max(0.5, settings.session_timeout / 4),
        "broker_rebalance_timeout": settings.rebalance_timeout,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "web_enabled": False,
    }


def build_app(settings: KafkaSettings, master: MasterKeys | None = None) -> tuple[faust.App, Any]:
    app = faust.App(settings.group, **app_settings(settings))
    app.transport = Transport(app.conf.broker_consumer, app)  # before anything uses one
    raw = app.topic(
        settings.topic("raw"),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    table: Any = app.Table(
        "subject-states",
        default=None,
        partitions=settings.partitions,
        key_type=str,
    )
    table.value_serializer = "kycflow_state"  # states and offsets, not generic JSON
    # Recovery hands changelog values over as decoded JSON: turn states back into states.
    table._to_value = _as_state
    folder = Folder(app, settings, table, master)

    async def quiet_client_logs() -> None:
        # The worker's logging setup leaves aiokafka at DEBUG: a log record built per
        # produced message measured ~8% of a worker's time.
        logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))

    app.task(quiet_client_logs)

    @app.agent(raw)
    async def fold_raw(stream: Any) -> None:
        async for events in stream.take_events(settings.batch, within=0.02):
            await folder.process(events)

    return app, folder


class Folder:
    """Folds batches of raw records and publishes their effects (see the module doc)."""

    def __init__(
        self, app: faust.App, settings: KafkaSettings, table: Any, master: MasterKeys | None
    ) -> None:
        self.app, self.settings, self.table = app, settings, table
        self.opener = RecordOpener(settings, master, _configured_master)
        self.topics = {s: settings.topic(s) for s in (STATUS, TRANSITIONS, ANNOTATIONS, QUARANTINE)}
        self.outputs = OutputProducer(settings.servers)
        self.folded = 0  # raw records folded by this process (a metric)

        async def stop_outputs(*_: Any, **__: Any) -> None:
            await self.outputs.stop()
            self.opener.close()

        app.on_before_shutdown.connect(stop_outputs)

    async def process(self, events: Sequence[Any]) -> None:
        batch = _Batch(self.table, self.next_offset)
        records: list[tuple[int, int, bytes]] = []  # (partition, offset, value) to fold
        for event in events:
            message = event.message
            partition, offset = message.partition, message.offset
            expected = batch.next_offset(partition)
            if offset < expected:
                continue  # folded and stored before a restart: at-least-once redelivery
            if offset > expected:
                for missed, value in await self._refetch(
                    message.topic, partition, expected, offset
                ):
                    records.append((partition, missed, value))
            records.append((partition, offset, event.value))
            batch.offsets[partition] = offset + 1
        await self._fold_all(batch, records)
        await self._publish(batch)

    async def _fold_all(self, batch: _Batch, records: list[tuple[int, int, bytes]]) -> None:
        positioned = [(position(p, offset), value) for p, offset, value in records]
        if self.opener.stale(positioned):  # a key to read first: off the event loop
            await asyncio.to_thread(self.opener.refresh, positioned)
        for env in self.opener.open(positioned):
            self._fold(batch, env)

    def next_offset(self, partition: int) -> int:
        """The partition's next raw offset to fold, as stored (0 before any)."""
        stored = self.table.data.get(POSITION + str(partition))
        return int(stored) if stored is not None else 0

    def _fold(self, batch: _Batch, env: RawEnvelope) -> None:
        self.folded += 1
        partition = coordinate(env.offset)[0]
        result = step(env, batch.states)
        for suffix, key, record in output_records(*result):
            if suffix == STATUS:  # the state changed: store it too
                assert result.outcome is not None
                batch.states.put(key, result.outcome.state, partition)
            batch.outputs.append((self.topics[suffix], key, record))

    async def _publish(self, batch: _Batch) -> None:
        producer = self.app.producer
        await self.outputs.publish(  # 1. outputs acknowledged
            [(topic, key.encode(), pydantic_core.to_json(r)) for topic, key, r in batch.outputs]
        )
        for key, (state, partition) in batch.states.changed.items():
            await self._store(key, state, partition)
        await producer.flush()  # 2. states durable
        for partition, offset in batch.offsets.items():
            await self._store(POSITION + str(partition), offset, partition)
        await producer.flush()  # 3. offsets durable, after the states they cover

    async def _store(self, key: str, value: Any, partition: int) -> None:
        """A table write: in memory, and to the changelog partition of the raw partition
        (Faust's recovery restores it to whichever worker gets that partition). Sent
        straight to the producer, serialised as the table's own changelog would be: the
        generic path (`Table.send_changelog`) costs several times more per write."""
        self.table.data[key] = value
        changelog = self.table.changelog_topic
        data, _ = changelog.prepare_key(key, self.table.key_serializer)
        encoded, _ = changelog.prepare_value(value, self.table.value_serializer)
        await self.app.producer.send(
            changelog.get_topic_name(), data, encoded, partition, None, None
        )

    async def _refetch(
        self, topic: str, partition: int, start: int, end: int
    ) -> list[tuple[int, bytes]]:
        """Records [start, end) of a partition, read directly: the consumer skipped them."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="kycflow-refetch",
        )
        await consumer.start()
        found: list[tuple[int, bytes]] = []
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=500)
                records = batch.get(tp, [])
                found += [(r.offset, r.value) for r in records if start <= r.offset < end]
                if any(r.offset >= end - 1 for r in records):
                    break
            else:
                raise RuntimeError(f"could not re-read {topic}[{partition}] {start}..{end - 1}")
        finally:
            await consumer.stop()
        log.warning(
            "re-read %d raw records of %s[%d] offsets %d..%d that the consumer skipped "
            "or that were not yet marked folded",
            len(found), topic, partition, start, end - 1,
        )  # fmt: skip
        return found


def _configured_master() -> MasterKeys | None:
    """The master key as `kycflow worker` finds it: configured, or `serve`'s first-run file
    beside the database (made after this worker started, on a fresh deployment)."""
    config = load_config(os.environ)
    return master_from_env(config, db_path(config))


def _as_state(value: Any) -> Any:
    return state_from_dict(value) if isinstance(value, dict) else value


class _States(Mapping[str, SubjectState]):
    """The table as `step` sees it: this batch's changes over the stored states."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.changed: dict[str, tuple[SubjectState, int]] = {}

    def __getitem__(self, key: str) -> SubjectState:
        if key in self.changed:
            return self.changed[key][0]
        state = self.table.data.get(key)
        if state is None:
            raise KeyError(key)
        return state  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self.changed)

    def __len__(self) -> int:
        return len(self.changed)

    def put(self, key: str, state: SubjectState, partition: int) -> None:
        self.changed[key] = (state, partition)


class _Batch:
    def __init__(self, table: Any, stored: Callable[[int], int]) -> None:
        self.states = _States(table)
        self.stored = stored
        self.outputs: list[tuple[str, str, dict[str, Any]]] = []
        self.offsets: dict[int, int] = {}  # partition -> next offset after this batch

    def next_offset(self, partition: int) -> int:
        return self.offsets[partition] if partition in self.offsets else self.stored(partition)


def run_worker(
    settings: KafkaSettings, loglevel: str = "info", master: MasterKeys | None = None
) -> int:
    """Fold until stopped; `EXIT_STALLED` when the watchdog gave up on a stall.

    MasterKeyError (one line, before anything starts) when the raw log is sealed under a
    master key that `master` does not hold."""
    ensure_topics(settings)
    check_master(settings, master)
    # (A log in the clear builds as before: tests wrap `build_app(settings)` to inject faults.)
    app, folder = build_app(settings, master) if master is not None else build_app(settings)
    status = start_status(settings.metrics_host, settings.worker_metrics_port, "worker")
    watchdog = Watchdog(app, folder, settings, status)
    app.task(watchdog.run)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if watchdog.gave_up:
            return EXIT_STALLED
        raise done
    finally:
        if status is not None:
            status.stop()
    return 0
