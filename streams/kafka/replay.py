"""`kycflow replay --from-kafka --to PATH`: re-fold `kycflow.raw` into fresh projections.

kafka-python reads every partition of the raw topic from its start up to the high
watermark seen when it began; the same `ProjectionStore` the embedded processor uses folds
it (one subject lives in one partition, so per-partition log order is the order that
matters). Offsets are positions (`statemachines.routing`), as the workers record them.
Sealed records are opened as the workers open them (`streams.kafka.keys`): a record whose
data key an erasure destroyed folds as the event kept for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from ingest.sealing import MasterKeys
from projections.schema import open_projections
from projections.store import ProjectionStore
from statemachines.envelope import RawEnvelope
from statemachines.routing import coordinate, position
from streams.kafka.config import KafkaSettings
from streams.kafka.keys import RecordOpener


def replay_from_kafka(
    settings: KafkaSettings,
    to: str,
    progress: Callable[[int], None] | None = None,
    *,
    batch: int = 5000,
    quiet_timeout: float = 10.0,
    master: MasterKeys | None = None,
) -> int:
    target = Path(to)
    if target.exists():
        raise FileExistsError(f"{to} exists; --to must name a new file")
    topic = settings.topic("raw")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers,
        client_id="kycflow-replay",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    opener = RecordOpener(settings, master)
    store = ProjectionStore(open_projections(str(target)), fresh=True)
    ends: dict[TopicPartition, int] = {}  # high watermark at the first fetch of each
    count, last_progress = 0, time.monotonic()
    try:
        while len(ends) < len(partitions) or any(
            consumer.position(tp) < end for tp, end in ends.items()
        ):
            polled = consumer.poll(timeout_ms=200, max_records=batch)
            for tp in partitions:
                if tp not in ends and (high := consumer.highwater(tp)) is not None:
                    ends[tp] = high
            envelopes = opener.open(
                [
                    (position(tp.partition, m.offset), m.value)
                    for tp, messages in polled.items()
                    for m in messages
                    if m.offset < ends.get(tp, m.offset + 1)
                ]
            )
            if envelopes:
                store.process(envelopes)
                count += len(envelopes)
                last_progress = time.monotonic()
                if progress is not None:
                    progress(len(envelopes))
            elif time.monotonic() - last_progress > quiet_timeout:
                raise TimeoutError(f"no progress reading {topic} for {quiet_timeout:g} s")
    finally:
        consumer.close()
        opener.close()
        store.db.close()
    return count


def fetch_positions(
    settings: KafkaSettings, positions: list[int], master: MasterKeys | None = None
) -> dict[int, RawEnvelope]:
    """The raw envelopes at these positions of the raw topic (for `kycflow inspect`), opened
    with `master`: an erased delivery reads as reduced (empty body)."""
    topic = settings.topic("raw")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers, client_id="kycflow-inspect", enable_auto_commit=False
    )
    found: list[tuple[int, bytes]] = []
    opener = RecordOpener(settings, master)
    try:
        for pos in positions:
            partition, offset = coordinate(pos)
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            for message in consumer.poll(timeout_ms=5000, max_records=1).get(tp, []):
                if message.offset == offset:
                    found.append((pos, message.value))
        return {env.offset: env for env in opener.open(found)}
    finally:
        consumer.close()
        opener.close()
