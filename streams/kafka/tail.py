"""`kycflow tail`: print status changes from `kycflow.status`, as a subscriber would.

It is also the example for downstream services: a kafka-python consumer of the compacted
status topic, keyed by subject, whose records are `SubjectState.public()` plus `subject`
and the fold's bookkeeping under `fold`. Records are delivered at least once: a
subscriber keeps the highest `version` per subject and ignores anything not newer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.kafka.config import KafkaSettings


def tail(
    settings: KafkaSettings,
    show: Callable[[dict[str, Any]], None],
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_timeout: float | None = None,
) -> int:
    """Call `show` for each newer status; stop after `limit` or `idle_timeout` s of quiet."""
    topic = settings.topic("status")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers, client_id="kycflow-tail", enable_auto_commit=False
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    if from_beginning:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
    latest: dict[str, int] = {}  # subject -> highest version shown: repeats are skipped
    shown = 0
    timeout_ms = int(idle_timeout * 1000) if idle_timeout is not None else None
    try:
        while limit is None or shown < limit:
            polled = consumer.poll(timeout_ms=timeout_ms or 1000)
            if not polled and timeout_ms is not None:
                break
            for messages in polled.values():
                for message in messages:
                    record = json.loads(message.value)
                    if record["version"] <= latest.get(record["subject"], 0):
                        continue
                    latest[record["subject"]] = record["version"]
                    record.pop("fold", None)  # the fold's bookkeeping: not for subscribers
                    show(record)
                    shown += 1
    finally:
        consumer.close()
    return shown


def line(record: dict[str, Any]) -> str:
    """One status change as a human-readable line."""
    decided = f", {record['decided_by']}" if record.get("decided_by") else ""
    final = " (final)" if record.get("final") else ""
    return (
        f"{record['updated_at'] or '-'}  {record['subject']}  {record['status'] or '-'}"
        f"{final}{decided}  v{record['version']} attempt {record['attempt']}"
    )
