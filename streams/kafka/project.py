"""`kycflow project`: Kafka mode's projector, output topics -> the SQLite projections.

One process per projections database (SQLite has one writer). It reads the status,
transitions, annotations and quarantine topics with a kafka-python consumer that owns
its offsets: they live in the database's `checkpoint` table, written in the same
transaction as the rows (`TopicProjection.apply`), so a crash resumes exactly after the
last committed batch. No consumer group: scaling out means more workers, not projectors.
A watch (`projector_watch`) re-seeks partitions that stall and publishes lag and health.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition

from projections.locking import DatabaseInUse, Role, claim
from projections.schema import open_projections
from projections.topics import Record, TopicProjection
from statemachines.codec import ANNOTATIONS, QUARANTINE, STATUS, TRANSITIONS
from streams.config import KycflowError
from streams.erasure.kafka_retention import start_retention
from streams.kafka.config import KafkaSettings, ensure_topics
from streams.kafka.projector_watch import ProjectorWatch
from streams.kafka.status import start_status
from streams.stopping import StopFlag

log = logging.getLogger("kycflow.projector")
KINDS = (STATUS, TRANSITIONS, ANNOTATIONS, QUARANTINE)


def run_projector(
    settings: KafkaSettings,
    db_path: str,
    *,
    stopping: Callable[[], bool] | None = None,
    batch: int = 2000,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Project until SIGTERM/SIGINT (or `stopping()`); returns the records applied."""
    try:  # the one writer of this database: refused while an embedded serve or replay is
        writing = claim(db_path, Role.WRITER)
    except DatabaseInUse as exc:
        raise KycflowError(str(exc)) from None
    flag = StopFlag()
    if stopping is None:
        signal.signal(signal.SIGTERM, flag.set)
        signal.signal(signal.SIGINT, flag.set)
        stopping = flag.is_set
    ensure_topics(settings)
    projection = TopicProjection(open_projections(db_path))
    consumer, kinds = _consumer(settings, projection.offsets())
    log.info("projecting %s into %s", ", ".join(kinds), db_path)
    status = start_status(settings.metrics_host, settings.projector_metrics_port, "projector")
    # KYCFLOW_RETENTION: the one process per projections database applies it (a daemon
    # thread; the policy reads this database to find the subjects due).
    start_retention(settings, db_path, stopping)
    partitions = sorted(consumer.assignment())
    watch = ProjectorWatch(consumer, partitions, projection.offsets, settings.stall_timeout, status)
    applied = 0
    try:
        while not stopping():
            watch.tick(applied)
            polled = consumer.poll(timeout_ms=100, max_records=batch)
            records = [
                Record(kinds[tp.topic], tp.topic, tp.partition, message.offset, message.value)
                for tp, messages in polled.items()
                for message in messages
            ]
            if records:
                applied += projection.apply(records)
                if on_batch is not None:
                    on_batch(len(records))
    finally:
        if status is not None:
            status.stop()
        consumer.close()
        projection.db.close()
        writing.release()
    return applied


def _consumer(
    settings: KafkaSettings, stored: dict[tuple[str, int], int]
) -> tuple[KafkaConsumer, dict[str, str]]:
    kinds = {settings.topic(kind): kind for kind in KINDS}
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers,
        client_id="kycflow-projector",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    partitions = [
        TopicPartition(topic, partition)
        for topic in kinds
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    for tp in partitions:
        if (tp.topic, tp.partition) in stored:
            consumer.seek(tp, stored[(tp.topic, tp.partition)])
        else:
            consumer.seek_to_beginning(tp)
    return consumer, kinds
