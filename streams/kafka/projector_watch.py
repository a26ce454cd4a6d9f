"""The projector's watch over the output partitions it reads (the worker's twin).

About once a second, from the projector's own loop: each partition's checkpoint (the next
offset to apply, as the database has it) against its end (the fetch high watermark; every
few seconds the broker's end offsets). A partition
with records to apply whose position has not moved for `KYCFLOW_KAFKA_STALL_TIMEOUT`
seconds has stalled: it is sought back to the database's checkpoint, once, with a warning;
still stalled one timeout later, the projector stops with an error (a non-zero exit, for
its supervisor to restart it). Published on the projector's `/metrics` and `/healthz`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.config import KycflowError
from streams.kafka.progress import Key, Progress, scalar
from streams.kafka.status import Snapshot, StatusServer

log = logging.getLogger("kycflow.projector")
PROBE_EVERY = 5.0


class ProjectorStalled(KycflowError):
    """Projecting made no progress even after re-seeking: the supervisor should restart."""


class ProjectorWatch:
    def __init__(
        self,
        consumer: KafkaConsumer,
        partitions: list[TopicPartition],
        stored: Callable[[], dict[tuple[str, int], int]],
        timeout: float,
        status: StatusServer | None,
    ) -> None:
        self.consumer, self.partitions, self.stored = consumer, partitions, stored
        self.status = status
        now, wall = time.monotonic(), time.time()
        self.progress = Progress(timeout)
        self.progress.assign(((tp.topic, tp.partition) for tp in partitions), now, wall)
        self.checked_at = self.probed_at = 0.0
        self.healed_at: float | None = None
        self.heals = 0
        self.ends: dict[Key, int] = {}

    def tick(self, applied: int) -> None:
        """Observe, and act on a stall; raises `ProjectorStalled` when giving up."""
        now, wall = time.monotonic(), time.time()
        if now - self.checked_at < 1.0:
            return
        self.checked_at = now
        self._probe(now)
        stored = self.stored()  # what was applied, not where the consumer is: it may skip
        for tp in self.partitions:
            key = (tp.topic, tp.partition)
            end = max(self.ends.get(key, 0), self.consumer.highwater(tp) or 0)
            self.progress.observe(key, now, wall, next=stored.get(key, 0), end=end)
        stalled = self.progress.stalled(now)
        self._publish(now, stalled, applied)
        if not stalled:
            self.healed_at = None
        elif self.healed_at is None:
            self.healed_at = now
            self.heal(stalled, now)
        elif now - self.healed_at >= self.progress.timeout:
            raise ProjectorStalled(
                f"projecting still stalled after re-seeking: {self.progress.describe(stalled, now)}"
            )

    def _probe(self, now: float) -> None:
        if now - self.probed_at < PROBE_EVERY:
            return
        self.probed_at = now
        try:
            ends = self.consumer.end_offsets(self.partitions, timeout_ms=5000)
        except Exception as exc:  # broker away: keep the last answer
            log.debug("end offsets unavailable: %r", exc)
            return
        self.ends = {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def heal(self, stalled: list[Key], now: float) -> None:
        self.heals += 1
        log.warning(
            "projecting stalled: %s; re-seeking them to the database's checkpoint",
            self.progress.describe(stalled, now),
        )
        stored = self.stored()
        for topic, partition in stalled:
            tp = TopicPartition(topic, partition)
            if (topic, partition) in stored:
                self.consumer.seek(tp, stored[(topic, partition)])
            else:
                self.consumer.seek_to_beginning(tp)

    def _publish(self, now: float, stalled: list[Key], applied: int) -> None:
        if self.status is None:
            return
        lines = self.progress.render("kycflow_projector", now)
        lines += scalar(
            "kycflow_projector_stall_heals_total",
            "counter",
            "Times the projector re-sought stalled partitions.",
            self.heals,
        )
        lines += scalar(
            "kycflow_projector_applied_records_total",
            "counter",
            "Output records applied.",
            applied,
        )
        health: dict[str, Any] = {
            "status": "stalled" if stalled else "ok",
            "stalled": [f"{t}[{p}]" for t, p in stalled],
            "lag": sum(part.lag or 0 for part in self.progress.partitions.values()),
        }
        self.status.publish(Snapshot("\n".join(lines) + "\n", not stalled, health))
